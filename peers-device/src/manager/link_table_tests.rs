//! Every switch and downgrade of the [`LinkTable`], without sockets or sleeps.

use super::*;
use ConnectionClass::{Local, ServerRelay, WebRtcDirect, WebRtcRelayed};
use LinkAction::{Close, Drain, Probe, SendRetire, SendTakeover, Switched};

const DRAIN: Duration = Duration::from_secs(10);

fn table(leader: bool, now: Instant) -> LinkTable {
    LinkTable::new(leader, PreferenceOptions::default(), DRAIN, now)
}

fn switched(from: Option<ConnectionClass>, to: LinkId, class: ConnectionClass) -> LinkAction {
    Switched { from, to, class }
}

/// A leader holding link 1 (relay), adopted on both sides.
fn leader_on_relay(now: Instant) -> LinkTable {
    let mut t = table(true, now);
    assert_eq!(t.adopted(1, ServerRelay, true, now), [switched(None, 1, ServerRelay)]);
    assert_eq!(t.group_ready(1, now), [], "a single link needs no takeover");
    t
}

#[test]
fn the_first_link_carries_traffic_at_once() {
    let now = Instant::now();
    let mut t = table(false, now);
    assert_eq!(t.adopted(7, WebRtcDirect, false, now), [switched(None, 7, WebRtcDirect)]);
    assert_eq!(t.active(), Some(7));
    assert_eq!(t.phase(7), Some(LinkPhase::Verified));
    assert_eq!(t.best_class(), Some(WebRtcDirect));
}

#[test]
fn leader_upgrades_to_a_better_class_once_the_peer_adopted_it_and_drains_the_old_one() {
    let now = Instant::now();
    let mut t = leader_on_relay(now);
    assert_eq!(t.adopted(2, WebRtcDirect, true, now), [], "not before the peer adopted it");
    assert_eq!(t.active(), Some(1));
    let actions = t.group_ready(2, now);
    assert_eq!(actions, [switched(Some(ServerRelay), 2, WebRtcDirect), SendTakeover(2), Drain(1)]);
    assert_eq!(t.active(), Some(2));
    assert!(t.phase(1).is_some_and(LinkPhase::is_retiring));
    assert_eq!(t.best_class(), Some(WebRtcDirect), "a draining link does not count");
}

#[test]
fn leader_keeps_a_better_link_when_a_worse_one_arrives_and_retires_the_worse() {
    let now = Instant::now();
    let mut t = table(true, now);
    t.adopted(1, Local, true, now);
    t.group_ready(1, now);
    t.adopted(2, ServerRelay, true, now);
    assert_eq!(t.group_ready(2, now), [SendTakeover(1), Drain(2)]);
    assert_eq!(t.active(), Some(1));
}

#[test]
fn within_a_class_only_a_clear_latency_gain_after_the_hold_down_switches() {
    let now = Instant::now();
    let mut t = table(true, now);
    t.adopted(1, WebRtcDirect, true, now);
    t.group_ready(1, now);
    t.latency(1, Duration::from_millis(100));
    t.adopted(2, WebRtcDirect, true, now);
    t.latency(2, Duration::from_millis(10));
    // Inside the hold-down: kept, and the newcomer drained.
    assert_eq!(t.group_ready(2, now + Duration::from_secs(1)), [SendTakeover(1), Drain(2)]);
    let later = now + Duration::from_secs(60);
    t.adopted(3, WebRtcDirect, true, later);
    t.latency(3, Duration::from_millis(90));
    assert_eq!(t.group_ready(3, later), [SendTakeover(1), Drain(3)], "a small gain is not enough");
    t.adopted(4, WebRtcDirect, true, later);
    t.latency(4, Duration::from_millis(20));
    let actions = t.group_ready(4, later);
    assert_eq!(actions, [switched(Some(WebRtcDirect), 4, WebRtcDirect), SendTakeover(4), Drain(1)]);
}

#[test]
fn follower_follows_the_takeover_and_ignores_its_own_preference() {
    let now = Instant::now();
    let mut t = table(false, now);
    t.adopted(1, Local, false, now);
    t.adopted(2, ServerRelay, true, now);
    assert_eq!(t.group_ready(2, now), [], "the follower never decides");
    let actions = t.takeover(2, now);
    assert_eq!(actions, [switched(Some(Local), 2, ServerRelay), Drain(1)]);
    assert_eq!(t.takeover(1, now), [], "a takeover on a draining link is stale");
    let mut leader = table(true, now);
    leader.adopted(1, Local, true, now);
    assert_eq!(leader.takeover(1, now), [], "a leader ignores takeovers");
}

#[test]
fn follower_falls_back_when_the_leader_retires_the_active_link_and_the_takeover_is_lost() {
    let now = Instant::now();
    let mut t = table(false, now);
    t.adopted(1, ServerRelay, false, now);
    t.adopted(2, WebRtcDirect, false, now);
    let actions = t.peer_retired(1, now);
    assert_eq!(actions, [switched(Some(ServerRelay), 2, WebRtcDirect), Drain(1)]);
    // Drained: the peer retired it already, so it is closed at once.
    assert_eq!(t.drained(1, now), [SendRetire(1), Close(1, CloseWhy::Superseded)]);
}

#[test]
fn a_retired_link_closes_when_both_sides_retired_it_or_at_the_deadline() {
    let now = Instant::now();
    let mut t = leader_on_relay(now);
    t.adopted(2, Local, true, now);
    t.group_ready(2, now);
    assert_eq!(t.next_deadline(), Some(now + DRAIN));
    assert_eq!(t.drained(1, now), [SendRetire(1)]);
    assert_eq!(t.peer_retired(1, now), [Close(1, CloseWhy::Superseded)]);

    let mut t = leader_on_relay(now);
    t.adopted(2, Local, true, now);
    t.group_ready(2, now);
    assert_eq!(t.tick(now + DRAIN - Duration::from_millis(1)), []);
    assert_eq!(t.tick(now + DRAIN), [SendRetire(1)], "a drain that takes too long ends anyway");
    assert_eq!(t.tick(now + DRAIN * 2), [Close(1, CloseWhy::Superseded)], "the peer never retired it");
    assert_eq!(t.phase(1), Some(LinkPhase::Closing));
    assert_eq!(t.tick(now + DRAIN * 3), [], "closed once");
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.closed(1, now + DRAIN * 3), []);
    assert_eq!(t.active(), Some(2));
}

#[test]
fn a_link_the_peer_retires_first_is_drained_here_then_closed() {
    let now = Instant::now();
    let mut t = table(false, now);
    t.adopted(1, ServerRelay, false, now);
    t.adopted(2, Local, false, now);
    t.takeover(2, now);
    assert_eq!(t.peer_retired(1, now), []);
    assert_eq!(t.drained(1, now), [SendRetire(1), Close(1, CloseWhy::Superseded)]);
    // A standby link (not active) the peer retires is retired here too.
    let mut t = table(true, now);
    t.adopted(1, Local, true, now);
    t.adopted(2, ServerRelay, true, now);
    assert_eq!(t.peer_retired(2, now), [Drain(2)]);
}

#[test]
fn the_only_link_stays_in_use_after_the_peer_retired_it() {
    let now = Instant::now();
    let mut t = table(false, now);
    t.adopted(1, WebRtcRelayed, false, now);
    assert_eq!(t.peer_retired(1, now), []);
    assert_eq!(t.phase(1), Some(LinkPhase::PeerRetired));
    assert_eq!(t.active(), Some(1));
    // A new link, then the takeover: the old one drains and closes at once.
    t.adopted(2, WebRtcDirect, true, now);
    assert_eq!(t.takeover(2, now), [switched(Some(WebRtcRelayed), 2, WebRtcDirect), Drain(1)]);
    assert_eq!(t.drained(1, now), [SendRetire(1), Close(1, CloseWhy::Superseded)]);
}

#[test]
fn the_active_link_dying_fails_over_to_the_next_best_at_once_on_both_sides() {
    let now = Instant::now();
    // Leader on WebRTC with a relay standby (not yet drained: adopted late).
    let mut t = table(true, now);
    t.adopted(1, WebRtcDirect, true, now);
    t.group_ready(1, now);
    t.adopted(2, ServerRelay, true, now);
    t.adopted(3, Local, true, now);
    t.closed(3, now);
    let actions = t.probe_failed(1, now);
    assert_eq!(actions, [Close(1, CloseWhy::Silent), switched(Some(WebRtcDirect), 2, ServerRelay)]);
    assert_eq!(t.active(), Some(2));
    assert_eq!(t.group_ready(2, now), [], "the only link: nothing to tell");

    // Follower: the same downgrade without waiting for the leader.
    let mut t = table(false, now);
    t.adopted(1, WebRtcDirect, false, now);
    t.adopted(2, ServerRelay, false, now);
    assert_eq!(t.closed(1, now), [switched(Some(WebRtcDirect), 2, ServerRelay)]);
    assert_eq!(t.probe_failed(1, now), [], "already gone");
}

#[test]
fn failover_prefers_class_then_latency_and_skips_draining_links() {
    let now = Instant::now();
    let mut t = table(false, now);
    t.adopted(1, Local, false, now);
    t.adopted(2, WebRtcRelayed, false, now);
    t.adopted(3, WebRtcDirect, false, now);
    t.adopted(4, WebRtcDirect, false, now);
    t.latency(3, Duration::from_millis(40));
    t.latency(4, Duration::from_millis(5));
    assert_eq!(t.closed(1, now), [switched(Some(Local), 4, WebRtcDirect)]);
    t.takeover(4, now);
    assert_eq!(t.closed(4, now), [], "every other link is draining: nothing to fail over to");
    assert_eq!(t.active(), None);
    assert_eq!(t.best_class(), None);
}

#[test]
fn leader_after_failover_tells_the_follower_once_a_better_link_is_adopted() {
    let now = Instant::now();
    let mut t = leader_on_relay(now);
    t.adopted(2, WebRtcDirect, true, now);
    t.group_ready(2, now);
    t.drained(1, now);
    t.peer_retired(1, now);
    t.closed(1, now);
    assert_eq!(t.probe_failed(2, now), [Close(2, CloseWhy::Silent)]);
    assert!(t.is_empty());
    // The relay is dialed again and adopted: traffic on it at once.
    assert_eq!(t.adopted(5, ServerRelay, true, now), [switched(None, 5, ServerRelay)]);
}

#[test]
fn a_peer_dialing_again_gets_the_kept_link_probed() {
    let now = Instant::now();
    let mut t = table(true, now);
    t.adopted(1, WebRtcDirect, true, now);
    t.group_ready(1, now);
    assert_eq!(t.adopted(2, ServerRelay, false, now), [Probe(1)]);
    assert_eq!(t.adopted(3, Local, false, now), [], "a better link is no sign of loss");
    assert_eq!(t.adopted(4, ServerRelay, true, now), [], "our own dial is no sign either");
}

/// A leader on WebRTC direct, adopted on both sides.
fn leader_on_webrtc(now: Instant) -> LinkTable {
    let mut t = table(true, now);
    t.adopted(1, WebRtcDirect, true, now);
    t.group_ready(1, now);
    t
}

#[test]
fn a_suspect_link_lets_its_standby_be_dialed_and_kept_then_fails_over_to_it_at_once() {
    let now = Instant::now();
    let mut t = leader_on_webrtc(now);
    assert_eq!(t.dial_floor(), Some(WebRtcDirect), "nothing worse is dialed while the link is healthy");
    assert_eq!(t.suspect(1, true, now), [], "suspicion alone moves no traffic");
    assert!(t.is_suspect(1));
    assert_eq!(t.dial_floor(), None, "every path may be dialed as a standby");
    assert_eq!(t.best_class(), Some(WebRtcDirect), "the link still counts as held");
    // The relay comes up and the peer adopts it: kept as a standby, not drained.
    assert_eq!(t.adopted(2, ServerRelay, true, now), []);
    assert_eq!(t.group_ready(2, now), [], "no takeover, no drain while the active link is suspect");
    assert_eq!(t.active(), Some(1));
    assert_eq!(t.phase(2), Some(LinkPhase::Adopted));
    // Declared dead: traffic moves to the standby with no dial in between.
    let actions = t.probe_failed(1, now);
    assert_eq!(actions[..2], [Close(1, CloseWhy::Silent), switched(Some(WebRtcDirect), 2, ServerRelay)]);
    assert_eq!(t.active(), Some(2));
}

#[test]
fn a_suspect_link_heard_again_keeps_traffic_and_the_standby_is_drained() {
    let now = Instant::now();
    let mut t = leader_on_webrtc(now);
    t.suspect(1, true, now);
    t.adopted(2, ServerRelay, true, now);
    t.group_ready(2, now);
    assert_eq!(t.suspect(1, true, now), [], "no change, no decision");
    assert_eq!(t.suspect(1, false, now), [SendTakeover(1), Drain(2)]);
    assert_eq!(t.active(), Some(1));
    assert_eq!(t.dial_floor(), Some(WebRtcDirect));
}

#[test]
fn a_follower_keeps_its_standby_until_the_leader_says() {
    let now = Instant::now();
    let mut t = table(false, now);
    t.adopted(1, WebRtcDirect, false, now);
    t.takeover(1, now);
    assert_eq!(t.suspect(1, true, now), []);
    assert_eq!(t.dial_floor(), None);
    assert_eq!(t.adopted(2, ServerRelay, true, now), []);
    assert_eq!(t.suspect(1, false, now), [], "the follower does not decide");
    assert_eq!(t.takeover(1, now), [Drain(2)], "the leader's choice drains the standby");
}
