//! Tests of the SQLite store: last writer wins, paging, idempotence, refusals
//! that leave nothing behind, reopening, and convergence under any sync order.

use peers_sdk::{DeviceId, DeviceKeys};
use proptest::prelude::*;

use super::store::{Lister, Store};
use super::types::{Change, MAX_VALUE_LEN, SyncLimits};
use crate::error::Error;
use crate::group::GroupId;

fn device() -> DeviceId {
    DeviceKeys::generate("u").unwrap().device_id()
}

fn group() -> GroupId {
    GroupId::new("g").unwrap()
}

fn store(device: DeviceId) -> Store {
    Store::in_memory(&group(), device, SyncLimits::default()).unwrap()
}

/// Pulls everything `from` has into `to`, page by page, as the engine does.
fn pull(to: &mut Store, from: &Store, page: u32, wall: u64) {
    let peer = from.info().device;
    loop {
        let batch = from.list_changes(to.checkpoint(&peer).unwrap(), page).unwrap();
        to.apply(&peer, &batch.changes, wall).unwrap();
        if !batch.more {
            break;
        }
    }
}

#[test]
fn the_later_write_wins_and_ties_break_on_the_device_id() {
    let (a, b) = (device(), device());
    let (mut sa, mut sb) = (store(a), store(b));
    sa.put("k", Some(b"from a"), 1_000).unwrap();
    sb.put("k", Some(b"from b"), 2_000).unwrap();
    pull(&mut sa, &sb, 10, 3_000);
    pull(&mut sb, &sa, 10, 3_000);
    assert_eq!(sa.get("k").unwrap().unwrap().value.as_deref(), Some(&b"from b"[..]));
    assert_eq!(sa.info().digest, sb.info().digest);

    // Same wall clock on both: the greater device id wins, on both devices.
    let (mut sa, mut sb) = (store(a), store(b));
    sa.put("k", Some(b"from a"), 5_000).unwrap();
    sb.put("k", Some(b"from b"), 5_000).unwrap();
    pull(&mut sa, &sb, 10, 5_000);
    pull(&mut sb, &sa, 10, 5_000);
    let winner: &[u8] = if a > b { b"from a" } else { b"from b" };
    assert_eq!(sa.get("k").unwrap().unwrap().value.as_deref(), Some(winner));
    assert_eq!(sb.get("k").unwrap().unwrap().value.as_deref(), Some(winner));
}

#[test]
fn the_log_keeps_one_row_per_key_and_pages_in_seq_order() {
    let mut s = store(device());
    for i in 0..25 {
        s.put(&format!("k{}", i % 10), Some(&[i as u8]), 1_000 + i).unwrap();
    }
    let info = s.info();
    assert_eq!(info.head, 25);
    assert_eq!(info.entries, 10);
    let first = s.list_changes(0, 4).unwrap();
    assert_eq!(first.changes.len(), 4);
    assert!(first.more);
    let seqs: Vec<u64> = first.changes.iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // Only the latest version of each key is listed.
    let all = s.list_changes(0, 1000).unwrap();
    assert_eq!(all.changes.len(), 10);
    assert!(!all.more);
}

#[test]
fn a_page_respects_the_byte_cap_but_always_makes_progress() {
    let limits = SyncLimits { max_batch_bytes: 3_000, ..SyncLimits::default() };
    let mut s = Store::in_memory(&group(), device(), limits).unwrap();
    for i in 0..5 {
        s.put(&format!("k{i}"), Some(&vec![1u8; 2_000]), 1_000).unwrap();
    }
    let batch = s.list_changes(0, 1000).unwrap();
    assert_eq!(batch.changes.len(), 1, "one 2 kB change fits 3 kB, two do not");
    assert!(batch.more);
}

#[test]
fn a_value_at_the_limit_travels_alone_in_its_page() {
    let (a, b) = (device(), device());
    let (mut sa, mut sb) = (store(a), store(b));
    let big: Vec<u8> = (0..MAX_VALUE_LEN).map(|i| (i % 251) as u8).collect();
    sa.put("small", Some(b"1"), 1_000).unwrap();
    sa.put("big", Some(&big), 1_000).unwrap();
    sa.put("after", Some(b"2"), 1_000).unwrap();
    assert!(matches!(sa.put("over", Some(&vec![0; MAX_VALUE_LEN + 1]), 1_000), Err(Error::InvalidChange { .. })));
    let limits = SyncLimits::default();
    let mut pages = 0;
    loop {
        let batch = sa.list_changes(sb.checkpoint(&a).unwrap(), 1000).unwrap();
        let bytes: usize = batch.changes.iter().map(|c| c.weight()).sum();
        assert!(bytes <= limits.max_batch_bytes || batch.changes.len() == 1, "a page over the cap holds one change");
        sb.apply(&a, &batch.changes, 1_000).unwrap();
        pages += 1;
        if !batch.more {
            break;
        }
    }
    assert_eq!(pages, 3, "the big value is a page of its own");
    assert_eq!(sb.get("big").unwrap().unwrap().value.unwrap(), big);
    assert_eq!(sb.info().digest, sa.info().digest);
}

#[test]
fn applying_twice_changes_nothing() {
    let (a, b) = (device(), device());
    let (mut sa, mut sb) = (store(a), store(b));
    sa.put("x", Some(b"1"), 1_000).unwrap();
    let batch = sa.list_changes(0, 100).unwrap();
    assert_eq!(sb.apply(&a, &batch.changes, 1_000).unwrap(), vec![true]);
    let head = sb.info().head;
    sb.reset_checkpoint(&a).unwrap();
    assert_eq!(sb.apply(&a, &batch.changes, 1_000).unwrap(), vec![false]);
    assert_eq!(sb.info().head, head);
}

#[test]
fn hostile_batches_are_refused_whole() {
    let (a, b) = (device(), device());
    let mut sa = store(a);
    sa.put("ok", Some(b"1"), 1_000).unwrap();
    sa.put("ok2", Some(b"2"), 1_000).unwrap();
    let good = sa.list_changes(0, 100).unwrap().changes;
    let mut sb = store(b);
    let before = sb.info();

    let mut skewed = good.clone();
    skewed[1].timestamp = (1_000 + 11 * 60 * 1000) << 16;
    assert!(matches!(sb.apply(&a, &skewed, 1_000), Err(Error::ClockSkew { .. })));

    let mut huge = good.clone();
    huge[1].value = Some(vec![0; MAX_VALUE_LEN + 1]);
    assert!(matches!(sb.apply(&a, &huge, 1_000), Err(Error::InvalidChange { .. })));

    let mut empty_key = good.clone();
    empty_key[0].key.clear();
    assert!(matches!(sb.apply(&a, &empty_key, 1_000), Err(Error::InvalidChange { .. })));

    let mut backwards = good.clone();
    backwards.swap(0, 1);
    assert!(matches!(sb.apply(&a, &backwards, 1_000), Err(Error::InvalidChange { .. })));

    let too_many = vec![good[0].clone(); 1001];
    assert!(matches!(sb.apply(&a, &too_many, 1_000), Err(Error::InvalidChange { .. })));

    // Nothing of any refused batch was written, and the checkpoint did not move.
    assert_eq!(sb.info(), before);
    assert_eq!(sb.checkpoint(&a).unwrap(), 0);
    assert!(sb.get("ok").unwrap().is_none());
}

#[test]
fn a_reopened_database_keeps_data_checkpoints_and_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.sqlite3");
    let (me, peer) = (device(), device());
    let first = {
        let mut s = Store::open(&path, &group(), me, SyncLimits::default()).unwrap();
        let mut other = store(peer);
        other.put("from-peer", Some(b"p"), 1_000).unwrap();
        pull(&mut s, &other, 10, 1_000);
        s.put("mine", Some(b"m"), 50_000).unwrap()
    };
    let mut s = Store::open(&path, &group(), me, SyncLimits::default()).unwrap();
    assert_eq!(s.get("mine").unwrap().unwrap().value.as_deref(), Some(&b"m"[..]));
    assert_eq!(s.checkpoint(&peer).unwrap(), 1);
    // The wall clock went back after the restart; the new write still sorts later.
    let next = s.put("mine", Some(b"m2"), 10_000).unwrap();
    assert!(next.timestamp > first.timestamp);
    assert!(next.seq > first.seq);

    // Another group's (or device's) database is refused.
    let other_group = GroupId::new("other").unwrap();
    assert!(matches!(
        Store::open(&path, &other_group, me, SyncLimits::default()),
        Err(Error::IncompatibleDatabase { .. })
    ));
    assert!(matches!(
        Store::open(&path, &group(), peer, SyncLimits::default()),
        Err(Error::IncompatibleDatabase { .. })
    ));
}

#[derive(Clone, Debug)]
enum Op {
    Put { device: usize, key: u8, value: u8, wall: u64 },
    Delete { device: usize, key: u8, wall: u64 },
    Pull { to: usize, from: usize, page: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..6u8, any::<u8>(), 0..50u64).prop_map(|(device, key, value, wall)| Op::Put {
            device,
            key,
            value,
            wall
        }),
        (0..3usize, 0..6u8, 0..50u64).prop_map(|(device, key, wall)| Op::Delete { device, key, wall }),
        (0..3usize, 0..3usize, 1..4u32).prop_map(|(to, from, page)| Op::Pull { to, from, page }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the writes and whatever order devices pull in, once every device
    /// has pulled from every other (twice round, so changes relayed through a third
    /// device arrive too), all hold the same values and the same digest.
    #[test]
    fn any_sync_order_converges(ops in proptest::collection::vec(op(), 1..60)) {
        let devices: Vec<DeviceId> = (0..3).map(|_| device()).collect();
        let mut stores: Vec<Store> = devices.iter().map(|d| store(*d)).collect();
        for op in ops {
            match op {
                Op::Put { device, key, value, wall } => {
                    stores[device].put(&format!("k{key}"), Some(&[value]), 1_000 + wall).unwrap();
                }
                Op::Delete { device, key, wall } => {
                    stores[device].put(&format!("k{key}"), None, 1_000 + wall).unwrap();
                }
                Op::Pull { to, from, page } if to != from => {
                    let (to_store, from_store) = pair(&mut stores, to, from);
                    pull(to_store, from_store, page, 2_000);
                }
                Op::Pull { .. } => {}
            }
        }
        for _ in 0..2 {
            for to in 0..3 {
                for from in 0..3 {
                    if to != from {
                        let (to_store, from_store) = pair(&mut stores, to, from);
                        pull(to_store, from_store, 2, 2_000);
                    }
                }
            }
        }
        let first = stores[0].snapshot().unwrap();
        for s in &stores[1..] {
            prop_assert_eq!(&s.snapshot().unwrap(), &first);
            prop_assert_eq!(s.info().digest, stores[0].info().digest);
        }
    }
}

fn pair(stores: &mut [Store], to: usize, from: usize) -> (&mut Store, &Store) {
    assert_ne!(to, from);
    if to < from {
        let (left, right) = stores.split_at_mut(from);
        (&mut left[to], &right[0])
    } else {
        let (left, right) = stores.split_at_mut(to);
        (&mut right[0], &left[from])
    }
}

#[test]
fn a_batch_of_writes_is_all_or_nothing() {
    let mut s = store(device());
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    let refused = s.put_many(&[("a", Some(b"1")), ("b", Some(&big))], 1_000);
    assert!(matches!(refused, Err(Error::InvalidChange { .. })));
    assert_eq!(s.info().head, 0);
    assert!(s.get("a").unwrap().is_none());
    let written = s.put_many(&[("a", Some(b"1")), ("b", None), ("a", Some(b"2"))], 1_000).unwrap();
    assert_eq!(written.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(s.get("a").unwrap().unwrap().value.as_deref(), Some(&b"2"[..]));
    assert_eq!(s.info().entries, 2);
    assert_eq!(s.list_changes(0, 100).unwrap().changes.len(), 2);
}

#[test]
fn a_page_that_fails_midway_leaves_nothing_and_the_checkpoint_where_it_was() {
    let (a, b) = (device(), device());
    let (mut sa, mut sb) = (store(a), store(b));
    let items: Vec<(String, Option<&[u8]>)> = (0..10).map(|i| (format!("k{i}"), Some(&b"v"[..]))).collect();
    let items: Vec<(&str, Option<&[u8]>)> = items.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    sa.put_many(&items[..4], 1_000).unwrap();
    pull(&mut sb, &sa, 100, 1_000);
    sa.put_many(&items[4..], 1_000).unwrap();
    let before = (sb.checkpoint(&a).unwrap(), sb.info());
    assert_eq!(before.0, 4);
    // The database refuses the page's fourth change (k7), after k4 to k6 were
    // written in the page's transaction.
    sb.db()
        .execute_batch(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON entries WHEN NEW.key = 'k7'
             BEGIN SELECT RAISE(ABORT, 'disk trouble'); END;",
        )
        .unwrap();
    let page = sa.list_changes_for(4, 100, Some(&b)).unwrap();
    assert_eq!(page.changes.len(), 6);
    assert!(sb.apply_page(&a, &page.changes, page.through, 1_000).is_err());
    assert_eq!((sb.checkpoint(&a).unwrap(), sb.info()), before, "checkpoint, head or digest moved");
    for key in ["k4", "k5", "k6"] {
        assert!(sb.get(key).unwrap().is_none(), "{key} was written by a failed page");
    }
    // Once the database takes it again, the same page applies whole.
    sb.db().execute_batch("DROP TRIGGER refuse").unwrap();
    assert_eq!(sb.apply_page(&a, &page.changes, page.through, 1_000).unwrap(), vec![true; 6]);
    assert_eq!(sb.checkpoint(&a).unwrap(), 10);
    assert_eq!(sb.info().digest, sa.info().digest);
}

#[test]
fn a_page_covers_what_it_leaves_out_and_stays_within_its_caps() {
    let (a, b) = (device(), device());
    let (mut sa, mut sb) = (store(a), store(b));
    sb.put("b0", Some(b"1"), 1_000).unwrap();
    sa.put_many(&[("a0", Some(b"1")), ("a1", Some(b"1")), ("a2", Some(b"1"))], 1_000).unwrap();
    pull(&mut sb, &sa, 100, 1_000);
    sb.put("b1", Some(b"1"), 1_000).unwrap();
    // sb's log: b0 (1), a0 to a2 (2 to 4), b1 (5). a asks without its own.
    let page = sb.list_changes_for(0, 1, Some(&a)).unwrap();
    assert_eq!(page.changes.iter().map(|c| c.seq).collect::<Vec<_>>(), [1]);
    assert_eq!((page.more, page.through), (true, 4), "a's three are covered, b1 is not");
    sa.apply_page(&b, &page.changes, page.through, 1_000).unwrap();
    assert_eq!(sa.checkpoint(&b).unwrap(), 4);
    let page = sb.list_changes_for(4, 1, Some(&a)).unwrap();
    assert_eq!((page.changes.len(), page.more, page.through), (1, false, 5));
    sa.apply_page(&b, &page.changes, page.through, 1_000).unwrap();
    assert_eq!(sa.info().digest, sb.info().digest);
    // Nothing new: an empty page that moves nothing writes nothing.
    let page = sb.list_changes_for(5, 100, Some(&a)).unwrap();
    assert!(page.changes.is_empty() && !page.more);
    assert_eq!(sa.apply_page(&b, &page.changes, page.through, 1_000).unwrap(), Vec::<bool>::new());
    // A page never holds more than the configured count, whatever is asked.
    let limits = SyncLimits { max_batch_changes: 2, ..SyncLimits::default() };
    let mut small = Store::in_memory(&group(), device(), limits).unwrap();
    small.put_many(&[("x", None), ("y", None), ("z", None)], 1_000).unwrap();
    let page = small.list_changes_for(0, u32::MAX, None).unwrap();
    assert_eq!((page.changes.len(), page.more, page.through), (2, true, 2));
}

/// A change from `origin` at `wall` ms (plus `counter`) for `key`, as a peer would list it.
fn change(seq: u64, key: u8, wall: u64, counter: u16, origin: DeviceId, value: Option<u8>) -> Change {
    Change {
        seq,
        key: format!("key {key}"),
        value: value.map(|v| vec![v]),
        timestamp: (wall << 16) | u64::from(counter),
        origin,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// A page is applied with its keys looked up and its rows written a few
    /// statements at a time. Whatever it holds (a key listed twice, versions
    /// older or newer than the stored ones, ties broken on the origin, more keys
    /// than one statement looks up or writes), it does exactly what applying
    /// its changes one at a time does: the same changes win, with the same
    /// `seq`s, values, entry count and digest.
    #[test]
    fn a_page_applies_as_its_changes_would_one_by_one(
        before in proptest::collection::vec((0..150u8, 1_000..1_040u64), 0..40),
        page in proptest::collection::vec((0..150u8, 1_000..1_040u64, 0..3u16, 0..3usize, any::<Option<u8>>()), 1..300),
    ) {
        let (me, a, c) = (device(), device(), device());
        let origins = [a, c, me];
        let page: Vec<Change> = page
            .into_iter()
            .enumerate()
            .map(|(i, (key, wall, counter, origin, value))| change(i as u64 + 1, key, wall, counter, origins[origin], value))
            .collect();
        let (mut whole, mut one_by_one) = (store(me), store(me));
        for s in [&mut whole, &mut one_by_one] {
            for (key, wall) in &before {
                s.put(&format!("key {key}"), Some(b"mine"), *wall).unwrap();
            }
        }
        let written = whole.apply(&a, &page, 2_000).unwrap();
        let mut expected = Vec::new();
        for change in &page {
            expected.extend(one_by_one.apply_page(&a, std::slice::from_ref(change), 0, 2_000).unwrap());
        }
        prop_assert_eq!(written, expected);
        prop_assert_eq!(whole.info(), one_by_one.info());
        prop_assert_eq!(whole.checkpoint(&a).unwrap(), page.len() as u64);
        for key in 0..150u8 {
            let key = format!("key {key}");
            prop_assert_eq!(whole.get(&key).unwrap(), one_by_one.get(&key).unwrap());
        }
    }
}

#[test]
fn within_a_page_a_repeated_key_compares_with_its_earlier_change() {
    let (a, b) = (device(), device());
    let mut sb = store(b);
    // (In this order: a device's clock never goes back.)
    sb.put("stored older", Some(b"b"), 1_000).unwrap();
    sb.put("stored newer", Some(b"b"), 5_000).unwrap();
    let page = [
        change(1, 1, 3_000, 0, a, Some(1)),
        change(2, 1, 2_000, 0, a, Some(2)), // older than the first: ignored
        change(3, 1, 3_000, 1, a, None),    // newer: a tombstone wins
        change(4, 1, 3_000, 1, a, Some(4)), // the same version again: ignored
        Change { key: "stored newer".into(), ..change(5, 0, 3_000, 0, a, Some(5)) },
        Change { key: "stored older".into(), ..change(6, 0, 3_000, 0, a, Some(6)) },
    ];
    assert_eq!(sb.apply(&a, &page, 6_000).unwrap(), [true, false, true, false, false, true]);
    let key = sb.get("key 1").unwrap().unwrap();
    assert_eq!((key.value, key.timestamp, key.seq), (None, (3_000 << 16) | 1, 4));
    assert_eq!(sb.get("stored newer").unwrap().unwrap().value.as_deref(), Some(&b"b"[..]));
    assert_eq!(sb.get("stored older").unwrap().unwrap().value.as_deref(), Some(&[6u8][..]));
    assert_eq!(sb.info().entries, 3);
}

#[test]
fn the_lister_reads_committed_pages_beside_an_open_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.sqlite3");
    let (me, asker) = (device(), device());
    let mut s = Store::open(&path, &group(), me, SyncLimits::default()).unwrap();
    let mut lister = Lister::open(&path, SyncLimits::default()).unwrap();
    s.put_many(&[("a", Some(b"1")), ("b", None), ("c", Some(b"3"))], 1_000).unwrap();
    let page = lister.list_changes_for(0, 2, None).unwrap();
    assert_eq!(page, s.list_changes_for(0, 2, None).unwrap());
    assert_eq!((page.changes.len(), page.head, page.more, page.through), (2, 3, true, 2));

    // The store's connection is in the middle of a write: the lister neither
    // waits for it nor sees it.
    s.db()
        .execute_batch(
            "BEGIN IMMEDIATE;
             INSERT INTO entries (key, value, ts, origin, seq) VALUES ('open', NULL, 1, 'x', 4);",
        )
        .unwrap();
    let during = lister.list_changes_for(0, 100, None).unwrap();
    assert_eq!((during.changes.len(), during.head, during.more, during.through), (3, 3, false, 3));
    s.db().execute_batch("ROLLBACK").unwrap();

    // Later commits are read, and the asker's own changes are left out as before.
    let mut asker_store = store(asker);
    asker_store.put("d", Some(b"4"), 1_000).unwrap();
    pull(&mut s, &asker_store, 10, 1_000);
    s.put("e", Some(b"5"), 1_000).unwrap();
    let page = lister.list_changes_for(3, 100, Some(&asker)).unwrap();
    assert_eq!(page, s.list_changes_for(3, 100, Some(&asker)).unwrap());
    assert_eq!(page.changes.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["e"]);
    assert_eq!((page.head, page.through), (5, 5));
}
