//! The per-sender queue quotas, played the same way against one server or
//! two instances sharing Redis: one address queues to made-up ids until its
//! devices' and its own quotas refuse, while a sender on another address keeps
//! queueing, and a delivered message gives its sender's quota back.

use std::net::{IpAddr, SocketAddr};

use peers_sdk::DeviceKeys;
use serde_json::{Value, json};

use super::keys;
use super::wire::WireClient;

/// Most messages one sending device may have queued in [`run`].
pub const PER_SENDER: usize = 4;
/// Most messages the senders of one address may have queued in [`run`].
pub const PER_ADDRESS: usize = 6;

const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const LEGIT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

fn target(name: &str, n: usize) -> DeviceKeys {
    keys(&format!("{name}-target-{n}"))
}

async fn queue(client: &mut WireClient, to: &DeviceKeys, n: usize) -> Value {
    let request = json!({
        "id": format!("m{n}"),
        "to": to.device_id().to_string(),
        "kind": "ready",
        "body": {},
        "ttl_ms": 600_000,
    });
    client.request("signal", request).await
}

fn queued(reply: &Value) {
    assert_eq!(reply["ok"], json!(true), "{reply}");
    assert_eq!(reply["outcome"], json!("queued"), "{reply}");
}

fn over_quota(reply: &Value, whose: &str) {
    assert_eq!(reply["ok"], json!(false), "{reply}");
    assert_eq!(reply["error"]["code"], json!("quota_exceeded"), "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(whose), "{reply}");
}

/// Plays the scenario; the attacker's two devices dial `first` and `second`
/// (the same server, or two instances), the legitimate sender `second`.
/// The server runs with `PER_SENDER` and `PER_ADDRESS` as its message quotas.
pub async fn run(first: SocketAddr, second: SocketAddr) {
    let mut one = WireClient::registered(first, ATTACKER, &keys("quota-one")).await;
    let mut two = WireClient::registered(second, ATTACKER, &keys("quota-two")).await;
    let recipient = target("one", 0);
    queued(&queue(&mut one, &recipient, 0).await);
    for n in 1..PER_SENDER {
        queued(&queue(&mut one, &target("one", n), n).await);
    }
    over_quota(&queue(&mut one, &target("one", PER_SENDER), PER_SENDER).await, "this device");
    for n in 0..PER_ADDRESS - PER_SENDER {
        queued(&queue(&mut two, &target("two", n), n).await);
    }
    over_quota(&queue(&mut two, &target("two", 99), 99).await, "this address");

    // Another address keeps the queue: its sender queues up to its own quota.
    let mut legit = WireClient::registered(second, LEGIT, &keys("quota-legit")).await;
    for n in 0..PER_SENDER {
        queued(&queue(&mut legit, &target("legit", n), n).await);
    }

    // A recipient comes online and takes its message: the device's and the
    // address's quotas get it back.
    let (mut taker, challenge) = WireClient::dial(first, LEGIT).await.expect("dial");
    let register = peers_signaling::protocol::answer_challenge(&recipient, &challenge).unwrap();
    let reply = taker.request("register", serde_json::to_value(register).unwrap()).await;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    assert_eq!(reply["queued"], json!(1), "the recipient takes its queued message: {reply}");
    queued(&queue(&mut one, &target("one", 50), 50).await);
    over_quota(&queue(&mut two, &target("two", 51), 51).await, "this address");
}
