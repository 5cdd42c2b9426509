//! The links to one device and the decisions about them: which one carries
//! traffic, when traffic moves to a better one (handover) or to the next-best
//! one (failover), and how a superseded link is drained and closed. Sans-IO:
//! inputs are events with the clock passed in, outputs are [`LinkAction`]s the
//! async driver (`links.rs`) carries out.
//!
//! ```text
//! inputs                                   outputs (LinkAction)
//! adopted(link, class, dialed)             Switched { from, to }   traffic moved
//! group_ready(link)   (peer adopted it)    SendTakeover(link)      leader: "use this one"
//! takeover(link)      (follower)           Drain(link)             stop using it; wait for idle()
//! peer_retired(link)                       SendRetire(link)        nothing of ours left on it
//! drained(link)                            Close(link, why)        close the connection
//! closed(link)                             Probe(link)             ping it now; no answer: probe_failed
//! probe_failed(link)  (liveness)
//! suspect(link, yes)  (liveness: a ping unanswered; or heard again)
//! latency(link, rtt)
//! tick(now)           (drain deadlines)
//! ```
//!
//! A link's life is one [`LinkPhase`]:
//!
//! ```text
//! Verified ─ peer's groupReady ─▶ Adopted ─ superseded ─▶ Draining ─ idle or deadline ─▶ Retired
//!    │                               │                      (SendRetire)                  │
//!    │                               └ peer retired it, nothing else here ─▶ PeerRetired  │
//!    │                                        peer's retire or deadline: Close ─▶ Closing ┘
//!    └─ closed / probe failed (from any phase): removed; if it was active, failover
//! ```
//!
//! A suspect link (the liveness check's ping went unanswered) keeps its phase
//! and its traffic, but no longer counts in [`LinkTable::dial_floor`], so the
//! paths it would fail over to are dialed and wait as standbys: the leader does
//! not drain them while the active link is suspect, and if it is then declared
//! dead, failover to a standby is immediate instead of waiting for a dial. When
//! the suspect link is heard again, the leader drains the standbys as usual.
//!
//! The side with the smaller device id (the leader) alone chooses the active
//! link among the links both sides adopted, and says so with a takeover; the
//! follower follows it. When the active link dies, both sides fail over at
//! once to their best remaining link (the leader then confirms with a
//! takeover), so traffic moves as soon as the liveness check gives up.

use std::time::{Duration, Instant};

use super::class::ConnectionClass;
use super::preference::{Candidate, PreferenceOptions, should_switch};

/// A link's number, unique in the manager.
pub type LinkId = u64;

/// Where a link is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPhase {
    /// Verified here; the peer has not announced its groups on it yet, so its
    /// RPCs may not be registered there. Carries traffic only as the first link.
    Verified,
    /// Both sides adopted it: it may carry traffic.
    Adopted,
    /// The peer retired it while it was this side's only usable link: still
    /// used until a replacement arrives, closed as soon as this side retires it.
    PeerRetired,
    /// Superseded: no new calls; this side's calls and streams on it finish
    /// until `deadline`.
    Draining {
        /// The peer's `peers:retire` arrived already.
        peer_retired: bool,
        /// When it is treated as drained anyway.
        deadline: Instant,
    },
    /// This side sent `peers:retire`; closed when the peer's arrives, or at `deadline`.
    Retired {
        /// When it is closed anyway.
        deadline: Instant,
    },
    /// Closed by this side after the retire; waiting for the close to be reported.
    Closing,
}

impl LinkPhase {
    /// Superseded (draining, retired or closing): takes no new traffic.
    pub fn is_retiring(self) -> bool {
        matches!(self, LinkPhase::Draining { .. } | LinkPhase::Retired { .. } | LinkPhase::Closing)
    }
}

/// Why a link is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseWhy {
    /// Both sides retired it (or the peer never answered the retire).
    Superseded,
    /// The liveness check got no answer in time.
    Silent,
}

/// What the driver does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkAction {
    /// Calls now use another link (`from` is `None` for the first link).
    Switched {
        /// The class given up, if any.
        from: Option<ConnectionClass>,
        /// The link now active.
        to: LinkId,
        /// Its class.
        class: ConnectionClass,
    },
    /// Leader: send `peers:takeover` on this link.
    SendTakeover(LinkId),
    /// Wait until nothing of this side is in flight on this link, then report `drained`.
    Drain(LinkId),
    /// Send `peers:retire` on this link.
    SendRetire(LinkId),
    /// Close this link's connection.
    Close(LinkId, CloseWhy),
    /// Ping this link at once; no answer in time is `probe_failed`.
    Probe(LinkId),
}

#[derive(Clone, Debug)]
struct Entry {
    id: LinkId,
    class: ConnectionClass,
    latency: Option<Duration>,
    phase: LinkPhase,
    /// The liveness check's ping went unanswered (orthogonal to the phase).
    suspect: bool,
}

impl Entry {
    fn candidate(&self) -> Candidate {
        Candidate { class: self.class, latency: self.latency }
    }

    /// Preferred first: class, then measured latency (unknown last).
    fn rank(&self) -> (ConnectionClass, Duration) {
        (self.class, self.latency.unwrap_or(Duration::MAX))
    }
}

/// The links to one device.
#[derive(Clone, Debug)]
pub struct LinkTable {
    leader: bool,
    preference: PreferenceOptions,
    drain_timeout: Duration,
    links: Vec<Entry>,
    active: Option<LinkId>,
    switched_at: Instant,
}

impl LinkTable {
    /// No links yet. `leader`: this side has the smaller device id.
    pub fn new(leader: bool, preference: PreferenceOptions, drain_timeout: Duration, now: Instant) -> Self {
        LinkTable { leader, preference, drain_timeout, links: Vec::new(), active: None, switched_at: now }
    }

    /// The link calls use now.
    pub fn active(&self) -> Option<LinkId> {
        self.active
    }

    /// A link's phase, if it is in the table.
    pub fn phase(&self, link: LinkId) -> Option<LinkPhase> {
        self.entry(link).map(|e| e.phase)
    }

    /// Whether no link is left.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The best class among links not superseded (dialers that cannot beat it are not tried).
    pub fn best_class(&self) -> Option<ConnectionClass> {
        self.links.iter().filter(|e| !e.phase.is_retiring()).map(|e| e.class).min()
    }

    /// The class a dial must beat to be worth trying: [`best_class`](Self::best_class)
    /// without suspect links, so a suspect link's standbys get dialed.
    pub fn dial_floor(&self) -> Option<ConnectionClass> {
        self.links.iter().filter(|e| !e.phase.is_retiring() && !e.suspect).map(|e| e.class).min()
    }

    /// Whether the liveness check holds `link` suspect.
    pub fn is_suspect(&self, link: LinkId) -> bool {
        self.entry(link).is_some_and(|e| e.suspect)
    }

    /// The liveness check finds `link` suspect, or heard again. On the leader,
    /// a link heard again lets the choice run again (standbys are drained).
    pub fn suspect(&mut self, link: LinkId, suspect: bool, now: Instant) -> Vec<LinkAction> {
        let mut actions = Vec::new();
        let Some(entry) = self.entry_mut(link) else { return actions };
        if entry.suspect == suspect {
            return actions;
        }
        entry.suspect = suspect;
        if self.leader && !suspect {
            self.decide(now, &mut actions);
        }
        actions
    }

    /// The earliest drain or retire deadline, for the driver's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.links
            .iter()
            .filter_map(|e| match e.phase {
                LinkPhase::Draining { deadline, .. } | LinkPhase::Retired { deadline } => Some(deadline),
                _ => None,
            })
            .min()
    }

    fn entry(&self, link: LinkId) -> Option<&Entry> {
        self.links.iter().find(|e| e.id == link)
    }

    fn entry_mut(&mut self, link: LinkId) -> Option<&mut Entry> {
        self.links.iter_mut().find(|e| e.id == link)
    }

    /// A verified connection was added. A link the peer dialed while this side
    /// holds an active link the new one cannot beat means the peer most likely
    /// lost that link: it is probed at once.
    pub fn adopted(&mut self, link: LinkId, class: ConnectionClass, dialed: bool, now: Instant) -> Vec<LinkAction> {
        let mut actions = Vec::new();
        if let Some(active) = self.active.and_then(|id| self.entry(id))
            && !dialed
            && !active.phase.is_retiring()
            && active.class <= class
        {
            actions.push(LinkAction::Probe(active.id));
        }
        self.links.push(Entry { id: link, class, latency: None, phase: LinkPhase::Verified, suspect: false });
        if self.active.is_none() {
            self.switch_to(link, now, &mut actions);
        }
        if self.leader {
            self.decide(now, &mut actions);
        }
        actions
    }

    /// The peer's first `peers:groupReady` on `link`: it adopted it too.
    pub fn group_ready(&mut self, link: LinkId, now: Instant) -> Vec<LinkAction> {
        let mut actions = Vec::new();
        let Some(entry) = self.entry_mut(link) else { return actions };
        if entry.phase != LinkPhase::Verified {
            return actions;
        }
        entry.phase = LinkPhase::Adopted;
        if self.leader {
            self.decide(now, &mut actions);
        }
        actions
    }

    /// A measured round trip on `link` (for the same-class latency rule).
    pub fn latency(&mut self, link: LinkId, rtt: Duration) {
        if let Some(entry) = self.entry_mut(link) {
            entry.latency = Some(rtt);
        }
    }

    /// Follower: the leader's `peers:takeover` arrived on `link`. (Ignored on the leader.)
    pub fn takeover(&mut self, link: LinkId, now: Instant) -> Vec<LinkAction> {
        let mut actions = Vec::new();
        if self.leader || self.entry(link).is_none_or(|e| e.phase.is_retiring()) {
            return actions;
        }
        self.follow(link, now, &mut actions);
        actions
    }

    fn follow(&mut self, link: LinkId, now: Instant, actions: &mut Vec<LinkAction>) {
        if let Some(entry) = self.entry_mut(link)
            && entry.phase == LinkPhase::Verified
        {
            // The peer uses it, so it adopted it.
            entry.phase = LinkPhase::Adopted;
        }
        if self.active != Some(link) {
            self.switch_to(link, now, actions);
        }
        let others: Vec<LinkId> =
            self.links.iter().filter(|e| e.id != link && !e.phase.is_retiring()).map(|e| e.id).collect();
        for other in others {
            self.drain(other, now, actions);
        }
    }

    /// The peer's `peers:retire` arrived on `link`: none of its calls are left there.
    pub fn peer_retired(&mut self, link: LinkId, now: Instant) -> Vec<LinkAction> {
        let mut actions = Vec::new();
        let active = self.active;
        let Some(entry) = self.entry_mut(link) else { return actions };
        match entry.phase {
            LinkPhase::Retired { .. } => {
                entry.phase = LinkPhase::Closing;
                actions.push(LinkAction::Close(link, CloseWhy::Superseded));
                return actions;
            }
            LinkPhase::Draining { deadline, .. } => {
                entry.phase = LinkPhase::Draining { peer_retired: true, deadline };
                return actions;
            }
            LinkPhase::PeerRetired | LinkPhase::Closing => return actions,
            LinkPhase::Verified | LinkPhase::Adopted => {}
        }
        if active != Some(link) {
            self.drain_peer_retired(link, now, &mut actions);
            return actions;
        }
        // The peer stopped using the link this side uses. On the follower, the
        // leader's takeover on another link was lost (or is late): follow it to
        // the best other link. On the leader, the follower moved on its own
        // (its link failed over): choose again without this one.
        let next = self.best_other(link);
        match next {
            Some(next) if !self.leader => {
                self.follow(next, now, &mut actions);
                self.mark_peer_retired(link);
            }
            Some(_) => {
                self.drain_peer_retired(link, now, &mut actions);
                if (self.active.is_none() || self.active == Some(link))
                    && let Some(next) = self.best_other(link)
                {
                    self.switch_to(next, now, &mut actions);
                }
                self.decide(now, &mut actions);
            }
            None => {
                if let Some(entry) = self.entry_mut(link) {
                    entry.phase = LinkPhase::PeerRetired;
                }
            }
        }
        actions
    }

    fn mark_peer_retired(&mut self, link: LinkId) {
        if let Some(entry) = self.entry_mut(link)
            && let LinkPhase::Draining { deadline, .. } = entry.phase
        {
            entry.phase = LinkPhase::Draining { peer_retired: true, deadline };
        }
    }

    fn drain_peer_retired(&mut self, link: LinkId, now: Instant, actions: &mut Vec<LinkAction>) {
        self.drain(link, now, actions);
        self.mark_peer_retired(link);
    }

    /// Nothing of this side is in flight on `link` any more.
    pub fn drained(&mut self, link: LinkId, now: Instant) -> Vec<LinkAction> {
        let mut actions = Vec::new();
        let timeout = self.drain_timeout;
        let Some(entry) = self.entry_mut(link) else { return actions };
        let LinkPhase::Draining { peer_retired, .. } = entry.phase else { return actions };
        actions.push(LinkAction::SendRetire(link));
        if peer_retired {
            entry.phase = LinkPhase::Closing;
            actions.push(LinkAction::Close(link, CloseWhy::Superseded));
        } else {
            entry.phase = LinkPhase::Retired { deadline: now + timeout };
        }
        actions
    }

    /// Deadlines: a drain that took too long counts as drained; a retired link
    /// the peer never retired is closed.
    pub fn tick(&mut self, now: Instant) -> Vec<LinkAction> {
        let mut actions = Vec::new();
        let due: Vec<(LinkId, LinkPhase)> = self
            .links
            .iter()
            .filter(|e| match e.phase {
                LinkPhase::Draining { deadline, .. } | LinkPhase::Retired { deadline } => deadline <= now,
                _ => false,
            })
            .map(|e| (e.id, e.phase))
            .collect();
        for (link, phase) in due {
            match phase {
                LinkPhase::Draining { .. } => actions.extend(self.drained(link, now)),
                _ => {
                    if let Some(entry) = self.entry_mut(link) {
                        entry.phase = LinkPhase::Closing;
                    }
                    actions.push(LinkAction::Close(link, CloseWhy::Superseded));
                }
            }
        }
        actions
    }

    /// The liveness check gave up on `link`: it is closed and, if it was
    /// active, traffic fails over to the best remaining link at once.
    pub fn probe_failed(&mut self, link: LinkId, now: Instant) -> Vec<LinkAction> {
        if self.entry(link).is_none() {
            return Vec::new();
        }
        let mut actions = vec![LinkAction::Close(link, CloseWhy::Silent)];
        actions.extend(self.closed(link, now));
        actions
    }

    /// `link` closed: forgotten; if it was active, traffic fails over to the best remaining link.
    pub fn closed(&mut self, link: LinkId, now: Instant) -> Vec<LinkAction> {
        let mut actions = Vec::new();
        let Some(position) = self.links.iter().position(|e| e.id == link) else { return actions };
        let gone = self.links.remove(position);
        if self.active == Some(link) {
            self.active = None;
            let next = self.links.iter().filter(|e| !e.phase.is_retiring()).min_by_key(|e| e.rank()).map(|e| e.id);
            match next {
                Some(next) => {
                    self.active = Some(next);
                    self.switched_at = now;
                    let class = self.entry(next).map_or(gone.class, |e| e.class);
                    actions.push(LinkAction::Switched { from: Some(gone.class), to: next, class });
                }
                None => self.switched_at = now,
            }
        }
        if self.leader && !self.links.is_empty() {
            self.decide(now, &mut actions);
        }
        actions
    }

    /// The best link other than `except` that is not superseded.
    fn best_other(&self, except: LinkId) -> Option<LinkId> {
        self.links.iter().filter(|e| e.id != except && !e.phase.is_retiring()).min_by_key(|e| e.rank()).map(|e| e.id)
    }

    fn switch_to(&mut self, link: LinkId, now: Instant, actions: &mut Vec<LinkAction>) {
        let from = self.active.and_then(|id| self.entry(id)).map(|e| e.class);
        let Some(class) = self.entry(link).map(|e| e.class) else { return };
        self.active = Some(link);
        self.switched_at = now;
        actions.push(LinkAction::Switched { from, to: link, class });
    }

    fn drain(&mut self, link: LinkId, now: Instant, actions: &mut Vec<LinkAction>) {
        let deadline = now + self.drain_timeout;
        let Some(entry) = self.entry_mut(link) else { return };
        match entry.phase {
            LinkPhase::Draining { .. } | LinkPhase::Retired { .. } | LinkPhase::Closing => {}
            LinkPhase::PeerRetired => {
                entry.phase = LinkPhase::Draining { peer_retired: true, deadline };
                actions.push(LinkAction::Drain(link));
            }
            LinkPhase::Verified | LinkPhase::Adopted => {
                entry.phase = LinkPhase::Draining { peer_retired: false, deadline };
                actions.push(LinkAction::Drain(link));
            }
        }
    }

    /// Leader: among the links both sides adopted (and the active one), keep
    /// the best (a better class always wins; within a class only a clear
    /// latency gain outside the hold-down), tell the follower, drain the rest.
    fn decide(&mut self, now: Instant, actions: &mut Vec<LinkAction>) {
        let active = self.active;
        let live: Vec<&Entry> = self
            .links
            .iter()
            .filter(|e| {
                !e.phase.is_retiring()
                    && (matches!(e.phase, LinkPhase::Adopted | LinkPhase::PeerRetired) || active == Some(e.id))
            })
            .collect();
        let current = active.and_then(|id| live.iter().find(|e| e.id == id).copied());
        if current.is_some_and(|c| c.suspect) {
            // Keep the links dialed as standbys until the active one is heard
            // again (then this runs again) or declared dead (failover).
            return;
        }
        let Some(mut best) = current.or_else(|| live.first().copied()) else { return };
        for entry in &live {
            if entry.id != best.id
                && should_switch(best.candidate(), entry.candidate(), self.switched_at, now, &self.preference)
            {
                best = entry;
            }
        }
        let best = best.id;
        let others: Vec<LinkId> = live.iter().filter(|e| e.id != best).map(|e| e.id).collect();
        let tell = !others.is_empty() || active != Some(best);
        if active != Some(best) {
            self.switch_to(best, now, actions);
        }
        if tell {
            actions.push(LinkAction::SendTakeover(best));
        }
        for other in others {
            self.drain(other, now, actions);
        }
    }
}

#[cfg(test)]
#[path = "link_table_tests.rs"]
mod tests;
