//! `peers demo`: a signaling server and three devices in two groups, in one
//! process on this machine. It connects them (a local socket, the signaling
//! server's relay, then WebRTC), writes on one device, shows the changes arrive
//! on the others, and prints what connected how.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peers_sdk::{ConnectionConfig, DeviceId, DeviceKeys, TrustLevel, TrustStore};
use peers_signaling::{ServerConfig, SignalingClientOptions, SignalingServer};
use peers_transport_socketio::{ClientOptions, ServerOptions, SocketIoServer};
use peers_transport_webrtc::{WebRtcConfig, WebRtcEndpoint};

use crate::error::{Error, Result};
use crate::group::GroupId;
use crate::manager::{ConnectionManager, ManagerConfig};
use crate::sync::{EngineOptions, SqliteSyncEngine};
use crate::transports::{
    ReconnectOptions, SignalingServerLink, SocketIoDialer, SocketIoListener, WebRtcDialer, WebRtcListener,
};
use crate::{ConnectionClass, ManagerStatus};

/// Changes written to the shared group.
const CHANGES: usize = 2_000;
/// The longest any step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the demo saw, for tests and the closing table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DemoSummary {
    /// Each device's name and final status.
    pub devices: Vec<(String, ManagerStatus)>,
    /// Time from the first write to every member holding every change.
    pub sync_time: Duration,
    /// Whether the device outside the "notes" group stayed without the note.
    pub note_stayed_private: bool,
    /// Classes the desktop's connection to the laptop went through, in order.
    pub desktop_path: Vec<ConnectionClass>,
}

struct Device {
    name: &'static str,
    id: DeviceId,
    manager: ConnectionManager,
    engines: HashMap<&'static str, SqliteSyncEngine>,
    listener: SocketIoListener,
    link: SignalingServerLink,
    endpoint: Arc<WebRtcEndpoint>,
    _webrtc: WebRtcListener,
}

fn fail(step: &'static str) -> impl Fn(String) -> Error {
    move |reason| Error::Config { field: step, reason }
}

async fn wait(step: &'static str, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !check() {
        if Instant::now() > deadline {
            return Err(Error::Config { field: step, reason: "did not happen within 30 s".into() });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Runs the demo, writing its story to `out`.
pub async fn run(out: &mut (impl Write + Send)) -> Result<DemoSummary> {
    let started = Instant::now();
    let say = |out: &mut (dyn Write + Send), text: String| {
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    say(out, "peers demo: a signaling server and three devices in two groups, on this machine\n".into());

    let signaling =
        SignalingServer::bind(ServerConfig::in_memory()).await.map_err(|e| fail("signaling")(e.to_string()))?;
    let url = signaling.url().ok_or_else(|| fail("signaling")("the server has no URL".into()))?;
    say(out, format!("[1/5] signaling server on {url} (in-memory store)"));

    let names = [("laptop", "alice"), ("phone", "alice"), ("desktop", "bob")];
    let keys: Vec<Arc<DeviceKeys>> =
        names.iter().map(|(_, user)| DeviceKeys::generate(*user).map(Arc::new)).collect::<Result<_, _>>()?;
    let ids: Vec<DeviceId> = keys.iter().map(|k| k.device_id()).collect();
    let groups: [(&'static str, Vec<usize>); 2] = [("family", vec![0, 1, 2]), ("notes", vec![0, 1])];
    let mut devices = Vec::new();
    for (index, ((name, _), keys)) in names.iter().zip(&keys).enumerate() {
        devices.push(start_device(name, keys.clone(), &ids, index, &groups, &url).await?);
    }
    say(out, "[2/5] devices: laptop and phone (alice), desktop (bob)".into());
    say(out, "      groups: family = laptop, phone, desktop; notes = laptop, phone".into());

    say(out, "[3/5] connecting".into());
    let (laptop, phone, desktop) = (&devices[0], &devices[1], &devices[2]);
    let t = Instant::now();
    let dialer = SocketIoDialer::new(ClientOptions::default());
    dialer.set_urls(phone.id, vec![phone.listener.url().to_owned()]);
    laptop.manager.add_dialer(Arc::new(dialer));
    laptop.manager.keep_connected(phone.id);
    wait("connect laptop and phone", || laptop.manager.connection(&phone.id).is_some()).await?;
    say(out, format!("      laptop  ↔ phone:  local socket (socket.io) in {} ms", t.elapsed().as_millis()));

    let t = Instant::now();
    desktop.manager.add_dialer(desktop.link.relay.clone());
    for peer in [laptop.id, phone.id] {
        desktop.manager.keep_connected(peer);
    }
    wait("relay desktop", || [laptop.id, phone.id].iter().all(|p| desktop.manager.connection(p).is_some())).await?;
    say(out, format!("      desktop ↔ laptop, phone: the signaling server's relay in {} ms", t.elapsed().as_millis()));
    let t = Instant::now();
    desktop.manager.add_dialer(Arc::new(WebRtcDialer::new(desktop.endpoint.clone())));
    wait("upgrade desktop", || {
        let status = desktop.manager.status();
        [laptop.id, phone.id].iter().all(|p| status.active(p).is_some_and(|c| c.class == ConnectionClass::WebRtcDirect))
    })
    .await?;
    say(out, format!("      desktop ↔ laptop, phone: upgraded to WebRTC in {} ms", t.elapsed().as_millis()));

    say(out, format!("[4/5] laptop writes {CHANGES} changes to \"family\" and a note to \"notes\""));
    let t = Instant::now();
    let items = (0..CHANGES).map(|i| (format!("photo-{i:05}"), Some(format!("caption {i}").into_bytes()))).collect();
    laptop.engines["family"].put_many(items).await?;
    laptop.engines["notes"].put("todo", b"buy milk").await?;
    let total = laptop.engines["family"].info().entries;
    let mut last_line = String::new();
    loop {
        let counts: Vec<u64> = [phone, desktop].iter().map(|d| d.engines["family"].info().entries).collect();
        let line = format!("      phone {} / {total}   desktop {} / {total}", counts[0], counts[1]);
        if line != last_line {
            say(out, line.clone());
            last_line = line;
        }
        if counts.iter().all(|c| *c == total) && phone.engines.get("notes").is_some_and(|e| e.info().entries == 1) {
            break;
        }
        if t.elapsed() > STEP_TIMEOUT {
            return Err(fail("sync")("changes did not arrive within 30 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sync_time = t.elapsed();
    // The desktop has no "notes" data, and cannot even ask the laptop for it.
    let refused = match desktop.manager.connection(&laptop.id) {
        Some(connection) => connection.emit::<_, ()>("getNetworkInfo_notes", &()).await.is_err(),
        None => false,
    };
    let note_stayed_private = !desktop.engines.contains_key("notes") && refused;
    say(
        out,
        format!(
            "      every change on both devices in {} ms; the desktop (not in \"notes\") has no note",
            sync_time.as_millis()
        ),
    );

    say(out, "[5/5] connections\n".into());
    for device in &devices {
        for peer in devices.iter().filter(|p| p.id != device.id) {
            // A fresh round trip for the table (pings otherwise run every 15 s).
            let _ = device.manager.ping(&peer.id).await;
        }
    }
    let mut summary = Vec::new();
    let mut table = String::new();
    let _ = writeln!(table, "{:<9} {:<9} {:<15} {:<10} {:>10}", "DEVICE", "PEER", "CLASS", "TRANSPORT", "LATENCY");
    let name_of = |id: &DeviceId| devices.iter().find(|d| d.id == *id).map_or("?", |d| d.name);
    for device in &devices {
        let status = device.manager.status();
        for c in status.connections.iter().filter(|c| c.active) {
            let latency = c.latency.or_else(|| c.path.as_ref().and_then(|p| p.rtt));
            let _ = writeln!(
                table,
                "{:<9} {:<9} {:<15} {:<10} {:>10}",
                device.name,
                name_of(&c.device),
                c.class.name(),
                c.transport,
                latency.map_or_else(|| "-".into(), |l| format!("{:.1} ms", l.as_secs_f64() * 1000.0))
            );
        }
        summary.push((device.name.to_owned(), status));
    }
    say(out, table);
    let desktop_path = desktop
        .manager
        .status()
        .history
        .iter()
        .filter_map(|h| match h.event {
            crate::ManagerEvent::Connected { device, class, .. } if device == laptop.id => Some(class),
            _ => None,
        })
        .collect();
    say(out, format!("done in {:.1} s", started.elapsed().as_secs_f64()));
    let mut stops = tokio::task::JoinSet::new();
    for device in devices {
        stops.spawn(async move {
            device.manager.shutdown().await;
            device.listener.shutdown().await;
        });
    }
    stops.spawn(signaling.shutdown());
    while stops.join_next().await.is_some() {}
    Ok(DemoSummary { devices: summary, sync_time, note_stayed_private, desktop_path })
}

async fn start_device(
    name: &'static str,
    keys: Arc<DeviceKeys>,
    ids: &[DeviceId],
    index: usize,
    groups: &[(&'static str, Vec<usize>)],
    signaling_url: &str,
) -> Result<Device> {
    let id = keys.device_id();
    let trust = TrustStore::new(TrustLevel::Unknown);
    for other in ids.iter().filter(|o| **o != id) {
        trust.set(*other, TrustLevel::Trusted);
    }
    let manager = ConnectionManager::new(ManagerConfig::new(ConnectionConfig::new(keys.clone(), trust)));
    let mut engines = HashMap::new();
    for (group, members) in groups.iter().filter(|(_, members)| members.contains(&index)) {
        let engine = SqliteSyncEngine::in_memory(GroupId::new(*group)?, id, EngineOptions::default()).await?;
        let others = members.iter().filter(|m| **m != index).map(|m| ids[*m]);
        manager.add_group(Arc::new(engine.clone()), others).await;
        engines.insert(*group, engine);
    }
    let server = SocketIoServer::bind(ServerOptions::default()).await.map_err(|e| fail("listen")(e.to_string()))?;
    let listener = SocketIoListener::start(manager.clone(), server);
    let config = WebRtcConfig::default();
    let link = SignalingServerLink::start(
        manager.clone(),
        signaling_url.to_owned(),
        keys.clone(),
        SignalingClientOptions::default(),
        ReconnectOptions::default(),
        config.connect_timeout,
    );
    link.registered(STEP_TIMEOUT).await.map_err(fail("register"))?;
    let endpoint = Arc::new(WebRtcEndpoint::new(link.signaling.clone(), config));
    let webrtc = WebRtcListener::start(manager.clone(), endpoint.clone());
    Ok(Device { name, id, manager, engines, listener, link, endpoint, _webrtc: webrtc })
}
