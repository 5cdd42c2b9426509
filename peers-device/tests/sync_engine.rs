//! The reference sync engine between devices over real `Connection`s (in-memory
//! sockets): changes flow both ways and on through a third device, only group
//! members can call a group's RPCs, and a member that restarts catches up.

use std::sync::Arc;
use std::time::Duration;

use peers_device::sync::{
    ChangeBatch, ChangeNotice, ConnectionPeer, EngineOptions, ListChanges, NetworkInfo, PeerDevice, SqliteSyncEngine,
    SyncGroup, expose_group,
};
use peers_device::{Error, GroupId};
use peers_sdk::rpc::RemoteErrorCode;
use peers_sdk::{Connection, ConnectionConfig, DeviceId, DeviceInfo, DeviceKeys, MemorySocket, TrustLevel};

const WAIT: Duration = Duration::from_secs(10);

struct Device {
    id: DeviceId,
    keys: Arc<DeviceKeys>,
}

fn device(name: &str) -> Device {
    let keys = Arc::new(DeviceKeys::generate(name).unwrap());
    Device { id: keys.device_id(), keys }
}

async fn engine(group: &GroupId, device: &Device) -> SqliteSyncEngine {
    SqliteSyncEngine::in_memory(group.clone(), device.id, EngineOptions::default()).await.unwrap()
}

/// Connects `a` (dialing) and `b` (accepting) with their own keys over an
/// in-memory socket pair.
async fn connect(a: &Device, b: &Device) -> (Connection, Connection) {
    let (near, far) = MemorySocket::pair(64, 1 << 20);
    let trust = |_: &DeviceInfo| TrustLevel::Trusted;
    let (ca, cb) = tokio::join!(
        Connection::connect(Box::new(near), ConnectionConfig::new(a.keys.clone(), trust), Some(b.id)),
        Connection::accept(Box::new(far), ConnectionConfig::new(b.keys.clone(), trust)),
    );
    (ca.unwrap(), cb.unwrap())
}

/// Registers `engine`'s RPCs on `connection` (the peer is a member).
fn expose(connection: &Connection, engine: &SqliteSyncEngine) {
    expose_group(connection, Arc::new(engine.clone()));
}

/// Tells `engine` the member behind `connection` is ready.
async fn ready(connection: &Connection, engine: &SqliteSyncEngine) {
    engine.peer_ready(Arc::new(ConnectionPeer::new(connection.clone(), engine.group_id().clone()))).await;
}

/// Connects `a` and `b` and wires `groups` (engine on a, engine on b) both ways.
async fn link(a: &Device, b: &Device, groups: &[(&SqliteSyncEngine, &SqliteSyncEngine)]) -> (Connection, Connection) {
    let (ca, cb) = connect(a, b).await;
    for (ea, eb) in groups {
        expose(&ca, ea);
        expose(&cb, eb);
    }
    for (ea, eb) in groups {
        ready(&ca, ea).await;
        ready(&cb, eb).await;
    }
    (ca, cb)
}

async fn wait_for(engine: &SqliteSyncEngine, key: &str, value: Option<&[u8]>) {
    tokio::time::timeout(WAIT, async {
        loop {
            if engine.get(key).await.unwrap().as_deref() == value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{key} never became {value:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_flow_both_ways_and_on_through_a_third_device() {
    let group = GroupId::new("notes").unwrap();
    let (a, b, c) = (device("a"), device("b"), device("c"));
    let (ea, eb, ec) = (engine(&group, &a).await, engine(&group, &b).await, engine(&group, &c).await);
    // a - b - c: a and c are not connected.
    let _ab = link(&a, &b, &[(&ea, &eb)]).await;
    let _bc = link(&b, &c, &[(&eb, &ec)]).await;

    ea.put("from-a", b"1").await.unwrap();
    ec.put("from-c", b"2").await.unwrap();
    for engine in [&ea, &eb, &ec] {
        wait_for(engine, "from-a", Some(b"1")).await;
        wait_for(engine, "from-c", Some(b"2")).await;
    }
    ec.delete("from-a").await.unwrap();
    wait_for(&ea, "from-a", None).await;
    assert_eq!(ea.info().digest, ec.info().digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_one_group_cannot_reach_another_groups_data() {
    let shared = GroupId::new("shared").unwrap();
    let secret = GroupId::new("secret").unwrap();
    let (a, b) = (device("a"), device("b"));
    let (ea, eb) = (engine(&shared, &a).await, engine(&shared, &b).await);
    let b_secret = engine(&secret, &b).await;
    b_secret.put("password", b"hunter2").await.unwrap();
    let (ca, _cb) = link(&a, &b, &[(&ea, &eb)]).await;

    // a is not in `secret`: b registered no `secret` RPCs on this connection.
    for method in [secret.list_changes_method(), secret.network_info_method()] {
        let err = ca.emit::<_, ()>(&method, &()).await.unwrap_err();
        assert!(
            matches!(&err, peers_sdk::Error::Remote(e) if e.code == RemoteErrorCode::UnknownMethod),
            "{method}: {err}"
        );
    }
    // And an engine refuses notifications from devices that are not members.
    let err = b_secret.notify_of_changes(&a.id, peers_device::sync::ChangeNotice { head: 1 }).await.unwrap_err();
    assert!(matches!(err, Error::NotAMember { .. }), "{err}");
    // The shared group works on the same connection.
    eb.put("hello", b"a").await.unwrap();
    wait_for(&ea, "hello", Some(b"a")).await;
    assert!(ea.get("password").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_was_offline_catches_up_page_by_page() {
    let group = GroupId::new("g").unwrap();
    let (a, b) = (device("a"), device("b"));
    let ea = engine(&group, &a).await;
    let mut options = EngineOptions::default();
    options.page_size = 50;
    let eb = SqliteSyncEngine::in_memory(group.clone(), b.id, options).await.unwrap();
    for i in 0..500u32 {
        ea.put(&format!("k{i}"), &i.to_be_bytes()).await.unwrap();
    }
    let _link = link(&a, &b, &[(&ea, &eb)]).await;
    wait_for(&eb, "k499", Some(&499u32.to_be_bytes())).await;
    tokio::time::timeout(WAIT, async {
        while eb.info().digest != ea.info().digest {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("digests never matched");
    assert_eq!(eb.snapshot().await.unwrap().len(), 500);
    // The status is updated when the pull that wrote the data finishes.
    tokio::time::timeout(WAIT, async {
        while !eb.peer_status().first().is_some_and(|s| s.caught_up() && s.pulls >= 1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("status never caught up: {:?}", eb.peer_status()));
    let status = eb.peer_status();
    assert_eq!(status.len(), 1);
    assert!(status[0].pulls >= 1);
    assert_eq!(status[0].written, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_converge_to_the_same_value_everywhere() {
    let group = GroupId::new("g").unwrap();
    let (a, b) = (device("a"), device("b"));
    let (ea, eb) = (engine(&group, &a).await, engine(&group, &b).await);
    let _link = link(&a, &b, &[(&ea, &eb)]).await;
    let writer = |engine: SqliteSyncEngine, tag: u8| async move {
        for i in 0..100u8 {
            engine.put(&format!("k{}", i % 5), &[tag, i]).await.unwrap();
        }
    };
    tokio::join!(writer(ea.clone(), 1), writer(eb.clone(), 2));
    tokio::time::timeout(WAIT, async {
        while ea.info().digest != eb.info().digest || ea.snapshot().await.unwrap() != eb.snapshot().await.unwrap() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the two devices never converged");
    assert_eq!(ea.snapshot().await.unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_device_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let group = GroupId::new("g").unwrap();
    let (a, b) = (device("a"), device("b"));
    let ea = engine(&group, &a).await;
    let path = dir.path().join("g.sqlite3");
    let open = || SqliteSyncEngine::open(path.clone(), group.clone(), b.id, EngineOptions::default());
    for i in 0..20u8 {
        ea.put(&format!("k{i}"), &[i]).await.unwrap();
    }
    {
        let eb = open().await.unwrap();
        let (ca, cb) = link(&a, &b, &[(&ea, &eb)]).await;
        wait_for(&eb, "k19", Some(&[19])).await;
        ca.close(peers_sdk::CloseReason::normal("restart")).await;
        cb.closed().await;
        ea.peer_gone(&b.id).await;
    }
    for i in 20..25u8 {
        ea.put(&format!("k{i}"), &[i]).await.unwrap();
    }
    let eb = open().await.unwrap();
    assert_eq!(eb.get("k19").await.unwrap(), Some(vec![19]), "data survived the restart");
    let _link = link(&a, &b, &[(&ea, &eb)]).await;
    wait_for(&eb, "k24", Some(&[24])).await;
    // Only the five new changes were pulled after the restart.
    tokio::time::timeout(WAIT, async {
        while !eb.peer_status().first().is_some_and(|s| s.caught_up() && s.written >= 5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("status never caught up: {:?}", eb.peer_status()));
    let status = eb.peer_status();
    assert_eq!(status[0].written, 5, "{status:?}");
}

/// A member reached over a faltering link: its first `failures` listChanges
/// calls fail.
struct Faltering {
    remote: SqliteSyncEngine,
    remote_id: DeviceId,
    asker: DeviceId,
    failures: std::sync::atomic::AtomicU32,
    calls: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl PeerDevice for Faltering {
    fn device_id(&self) -> DeviceId {
        self.remote_id
    }
    async fn list_changes(&self, request: ListChanges) -> peers_device::Result<ChangeBatch> {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.fetch_add(1, SeqCst);
        if self.failures.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::Worker("the link faltered".into()));
        }
        self.remote.list_changes(&self.asker, request).await
    }
    async fn get_network_info(&self) -> peers_device::Result<NetworkInfo> {
        self.remote.get_network_info(&self.asker).await
    }
    async fn notify_of_changes(&self, _notice: ChangeNotice) -> peers_device::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pull_is_tried_again_without_another_notice() {
    let group = GroupId::new("g").unwrap();
    let (a, b) = (device("a"), device("b"));
    let eb = engine(&group, &b).await;
    eb.put("k", b"v").await.unwrap();
    let mut options = EngineOptions::default();
    options.retry_first = Duration::from_millis(50);
    let ea = SqliteSyncEngine::in_memory(group.clone(), a.id, options).await.unwrap();
    let member =
        Arc::new(Faltering { remote: eb.clone(), remote_id: b.id, asker: a.id, failures: 3.into(), calls: 0.into() });
    // Being ready wakes one pull; it fails, and b never notifies again.
    ea.peer_ready(member.clone()).await;
    wait_for(&ea, "k", Some(b"v")).await;
    assert!(member.calls.load(std::sync::atomic::Ordering::SeqCst) >= 4);
}

/// A member called in process, recording what the puller and the notifier do.
struct Watched {
    remote: SqliteSyncEngine,
    remote_id: DeviceId,
    asker: DeviceId,
    lists_in_flight: std::sync::atomic::AtomicUsize,
    most_lists_in_flight: std::sync::atomic::AtomicUsize,
    lists: std::sync::atomic::AtomicUsize,
    largest_page: std::sync::atomic::AtomicUsize,
    notices: std::sync::Mutex<Vec<u64>>,
}

impl Watched {
    fn new(remote: &SqliteSyncEngine, remote_id: DeviceId, asker: DeviceId) -> Arc<Self> {
        Arc::new(Watched {
            remote: remote.clone(),
            remote_id,
            asker,
            lists_in_flight: 0.into(),
            most_lists_in_flight: 0.into(),
            lists: 0.into(),
            largest_page: 0.into(),
            notices: std::sync::Mutex::new(Vec::new()),
        })
    }
}

#[async_trait::async_trait]
impl PeerDevice for Watched {
    fn device_id(&self) -> DeviceId {
        self.remote_id
    }
    async fn list_changes(&self, request: ListChanges) -> peers_device::Result<ChangeBatch> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.lists_in_flight.fetch_add(1, SeqCst) + 1;
        self.most_lists_in_flight.fetch_max(now, SeqCst);
        self.lists.fetch_add(1, SeqCst);
        // Give an apply running beside this call the time to overlap it.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let batch = self.remote.list_changes(&self.asker, request).await;
        if let Ok(batch) = &batch {
            self.largest_page.fetch_max(batch.changes.len(), SeqCst);
        }
        self.lists_in_flight.fetch_sub(1, SeqCst);
        batch
    }
    async fn get_network_info(&self) -> peers_device::Result<NetworkInfo> {
        self.remote.get_network_info(&self.asker).await
    }
    async fn notify_of_changes(&self, notice: ChangeNotice) -> peers_device::Result<()> {
        self.notices.lock().unwrap().push(notice.head);
        Ok(())
    }
}

async fn wait_same(a: &SqliteSyncEngine, b: &SqliteSyncEngine) {
    tokio::time::timeout(WAIT, async {
        while a.info().digest != b.info().digest {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the two devices never converged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_reads_one_page_ahead_and_never_more() {
    let group = GroupId::new("g").unwrap();
    let (a, b) = (device("a"), device("b"));
    let ea = engine(&group, &a).await;
    for start in (0..600).step_by(100) {
        let items = (start..start + 100).map(|i| (format!("k{i:04}"), Some(vec![7u8; 100]))).collect();
        ea.put_many(items).await.unwrap();
    }
    let mut options = EngineOptions::default();
    options.page_size = 25;
    let eb = SqliteSyncEngine::in_memory(group.clone(), b.id, options).await.unwrap();
    let member = Watched::new(&ea, a.id, b.id);
    eb.peer_ready(member.clone()).await;
    wait_same(&ea, &eb).await;
    use std::sync::atomic::Ordering::SeqCst;
    // 600 changes in pages of 25: 24 pages, each asked for once (the next
    // while the previous is applied), one call at a time.
    assert!(member.lists.load(SeqCst) >= 24, "{} calls", member.lists.load(SeqCst));
    assert_eq!(member.most_lists_in_flight.load(SeqCst), 1, "more than one page asked for at once");
    assert_eq!(member.largest_page.load(SeqCst), 25, "pages within page_size");
    wait_checkpoint(&eb, ea.info().head).await;
}

/// Waits until `engine`'s checkpoint of its first peer is `head`: it is saved
/// once the last page is applied, just after the digests agree.
async fn wait_checkpoint(engine: &SqliteSyncEngine, head: u64) {
    tokio::time::timeout(WAIT, async {
        while engine.peer_status()[0].checkpoint != head {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the checkpoint stayed at {}, not {head}", engine.peer_status()[0].checkpoint));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_pulled_from_a_member_are_not_announced_back_to_it() {
    let group = GroupId::new("g").unwrap();
    let (a, b) = (device("a"), device("b"));
    let ea = engine(&group, &a).await;
    ea.put("from a", b"1").await.unwrap();
    let mut options = EngineOptions::default();
    options.notify_debounce = Duration::ZERO;
    let eb = SqliteSyncEngine::in_memory(group.clone(), b.id, options).await.unwrap();
    let member = Watched::new(&ea, a.id, b.id);
    // Ready: b pulls a's change at once (and writes it as its seq 1).
    eb.peer_ready(member.clone()).await;
    wait_for(&eb, "from a", Some(b"1")).await;
    // A write of b's own is announced (head 2), and is the first notice a gets:
    // seq 1 only holds what a wrote.
    eb.put("from b", b"2").await.unwrap();
    tokio::time::timeout(WAIT, async {
        while !member.notices.lock().unwrap().contains(&2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("b never announced its own write");
    assert_eq!(*member.notices.lock().unwrap(), [2], "a was told about its own change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_not_sent_back_its_own_changes_but_a_full_read_gets_them() {
    let group = GroupId::new("g").unwrap();
    let (a, b) = (device("a"), device("b"));
    let (ea, eb) = (engine(&group, &a).await, engine(&group, &b).await);
    ea.put_many((0..10).map(|i| (format!("a{i}"), Some(b"x".to_vec()))).collect()).await.unwrap();
    // b's log: its own b0 (seq 1), a's ten (2 to 11, pulled in one page), b1 (12).
    eb.put("b0", b"y").await.unwrap();
    eb.peer_ready(Watched::new(&ea, a.id, b.id)).await;
    wait_for(&eb, "a9", Some(b"x")).await;
    eb.put("b1", b"y").await.unwrap();
    let list = |since, limit, skip_mine| eb.list_changes(&a.id, ListChanges { since, limit, skip_mine });
    // a asking with its own left out gets b's two, and pages that cover b's log.
    let page = list(0, 100, true).await.unwrap();
    assert_eq!(page.changes.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["b0", "b1"]);
    assert_eq!((page.through, page.head, page.more), (12, 12, false));
    // Pages of 1: the first holds b0 and covers a's ten after it.
    let page = list(0, 1, true).await.unwrap();
    assert_eq!((page.changes[0].key.as_str(), page.more, page.through), ("b0", true, 11));
    assert_eq!(page.next_since(0), 11);
    let page = list(11, 1, true).await.unwrap();
    assert_eq!((page.changes[0].key.as_str(), page.more, page.next_since(11)), ("b1", false, 12));
    // Without `skip_mine` (an older device, or the periodic full read): all of it.
    assert_eq!(list(0, 100, false).await.unwrap().changes.len(), 12);
}

/// `count` changes written on `engine` in transactions of 500.
async fn write_many(engine: &SqliteSyncEngine, count: usize) {
    for start in (0..count).step_by(500) {
        let items = (start..(start + 500).min(count)).map(|i| (format!("k{i:05}"), Some(vec![1u8; 20]))).collect();
        engine.put_many(items).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_as_large_as_the_smaller_cap_of_the_two_devices() {
    let group = GroupId::new("g").unwrap();
    let (a, b, c) = (device("a"), device("b"), device("c"));
    // A device with the earlier default: pages of at most 1,000 changes.
    let mut small = EngineOptions::default();
    small.page_size = 1000;
    small.limits.max_batch_changes = 1000;
    use std::sync::atomic::Ordering::SeqCst;

    // Both at the default: one page holds 4,000 changes.
    let ea = engine(&group, &a).await;
    write_many(&ea, 9_000).await;
    let eb = engine(&group, &b).await;
    let from_a = Watched::new(&ea, a.id, b.id);
    eb.peer_ready(from_a.clone()).await;
    wait_same(&ea, &eb).await;
    assert_eq!(from_a.largest_page.load(SeqCst), 4000);
    wait_checkpoint(&eb, ea.info().head).await;

    // The smaller cap wins, whichever side has it: c asks b for pages of
    // 1,000, and b asks c, which serves at most 1,000.
    let ec = SqliteSyncEngine::in_memory(group.clone(), c.id, small).await.unwrap();
    let from_b = Watched::new(&eb, b.id, c.id);
    ec.peer_ready(from_b.clone()).await;
    wait_same(&eb, &ec).await;
    assert_eq!(from_b.largest_page.load(SeqCst), 1000);
    let items = (0..3_000).map(|i| (format!("c{i:05}"), Some(vec![2u8; 20]))).collect();
    ec.put_many(items).await.unwrap();
    let from_c = Watched::new(&ec, c.id, b.id);
    eb.peer_ready(from_c.clone()).await;
    wait_same(&eb, &ec).await;
    assert_eq!(from_c.largest_page.load(SeqCst), 1000);
}
