//! Transfer sessions joined by a short code: the bookkeeping, with no I/O and
//! no clock (every call takes `now` in unix milliseconds and, where it needs
//! them, a random source).
//!
//! ```text
//!   create ─▶ Created ──join(right code)──▶ Joined ──close(token)──▶ Closed
//!               │  │   ▲                      │
//!               │  │   └── reopen (pake, the creator's token, ≤ 16 times)
//!               │  └─ 3 wrong secrets ─▶ Closed ("locked")
//!               └──────── now ≥ expires_at ───┴──────────────────▶ Expired
//! ```
//!
//! A code is `NNNN-SSSSSS`: a 4-digit *slot* that names the session among the
//! live ones and a 6-character secret in Crockford's base32 (30 bits). A join
//! that names a live slot with the wrong secret counts against that session;
//! after [`SessionLimits::max_failed_joins`] the session is closed as locked, so
//! guessing one session's secret has at most that many tries. (Guessing slots
//! is limited per IP address by the server.) Exactly one receiver joins.
//! Tokens are 32 random bytes, returned once and kept only as SHA-256 hashes.
//! Finished sessions are kept for [`SessionLimits::default_ttl`] after their
//! deadline so late joins get a clear `session_expired` / `session_closed`.
//!
//! A session of [`SessionKind::Pake`] has no server secret: its code is the
//! slot number alone (`4821`), and the first device that names it joins. The
//! parties then run a PAKE on words the server never sees (the device's
//! transfer codes, `4821-maple-orbit`), and the creator closes the session
//! after one failed PAKE, so a guesser gets one try per code. Its creator may
//! [reopen](SessionTable::reopen) it for one new join when its receiver vanished
//! mid-way (the receiver runs the same code again), at most [`MAX_REOPENS`] times;
//! every join of a reopened session runs a new PAKE, and the creator burns the
//! session after a failed one as before.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use peers_sdk::DeviceId;
use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::protocol::{ErrorCode, Rejection};
pub use crate::protocol::{SessionKind, SessionState};

/// Crockford's base32 alphabet (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const SECRET_LEN: usize = 6;
const SLOTS: u16 = 10_000;

/// Most times one [`SessionKind::Pake`] session is reopened for a new receiver.
pub const MAX_REOPENS: u32 = 16;

/// Bounds and times of sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionLimits {
    /// Lifetime of a session whose creator names none. Default: 10 minutes.
    pub default_ttl: Duration,
    /// Longest lifetime a creator may ask for (longer is cut). Default: 1 hour.
    pub max_ttl: Duration,
    /// Most live sessions at once (created or joined; closed and expired
    /// ones never count, and give their slot to a new session when no slot
    /// is free); at most 5000 so slots stay easy to find. Default: 5000.
    pub max_sessions: usize,
    /// Most live sessions one device may have created. Default: 16.
    pub per_device: usize,
    /// Most live sessions the devices of one address (IPv4 address, IPv6
    /// /64) may have created. Default: 64.
    pub per_address: usize,
    /// Sessions one device may create per minute (a burst of as many).
    /// Default: 10.
    pub creates_per_minute_per_device: u32,
    /// Sessions the devices of one address may create per minute (a burst
    /// of as many). Default: 30.
    pub creates_per_minute_per_ip: u32,
    /// Wrong secrets a session tolerates before it is locked. Default: 3.
    pub max_failed_joins: u32,
    /// Join attempts per minute per IP address (a burst of as many). Default: 10.
    pub joins_per_minute_per_ip: u32,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            default_ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(3600),
            max_sessions: 5000,
            per_device: 16,
            per_address: 64,
            creates_per_minute_per_device: 10,
            creates_per_minute_per_ip: 30,
            max_failed_joins: 3,
            joins_per_minute_per_ip: 10,
        }
    }
}

impl SessionLimits {
    /// Checks the limits; the error names the field.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |field, detail: &str| Err(crate::Error::InvalidConfig { field, detail: detail.into() });
        if self.default_ttl.is_zero() || self.default_ttl > self.max_ttl {
            return invalid("sessions.default_ttl", "must be positive and at most sessions.max_ttl");
        }
        if self.max_ttl > Duration::from_secs(24 * 3600) {
            return invalid("sessions.max_ttl", "must be at most a day");
        }
        if self.max_sessions == 0 || self.max_sessions > usize::from(SLOTS / 2) {
            return invalid("sessions.max_sessions", "must be 1..=5000");
        }
        if self.per_device == 0 || self.max_failed_joins == 0 || self.joins_per_minute_per_ip == 0 {
            return invalid("sessions.per_device / max_failed_joins / joins_per_minute_per_ip", "must be at least 1");
        }
        if self.per_address == 0 || self.creates_per_minute_per_device == 0 || self.creates_per_minute_per_ip == 0 {
            return invalid(
                "sessions.per_address / creates_per_minute_per_device / creates_per_minute_per_ip",
                "must be at least 1",
            );
        }
        Ok(())
    }
}

/// One session, as kept by the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSession {
    /// Names the session in later requests and events.
    pub transfer_id: String,
    /// How its code is made and checked (absent in sessions stored before
    /// kinds existed: [`SessionKind::Secret`]).
    #[serde(default)]
    pub kind: SessionKind,
    /// The code's slot.
    pub slot: u16,
    /// The code's secret (empty for [`SessionKind::Pake`]).
    pub secret: String,
    /// The creator.
    pub sender: DeviceId,
    /// The creator's address group (IPv4 address, IPv6 /64), for the
    /// per-address quota; absent in sessions stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<IpAddr>,
    /// The receiver, once joined.
    pub receiver: Option<DeviceId>,
    /// SHA-256 of the sender's token, hex.
    pub sender_token_hash: String,
    /// SHA-256 of the receiver's token, hex.
    pub receiver_token_hash: Option<String>,
    /// The state.
    pub state: SessionState,
    /// Wrong secrets tried so far.
    pub failed_joins: u32,
    /// When it ends (unix milliseconds).
    pub expires_at: u64,
    /// Why it closed.
    pub reason: Option<String>,
    /// Times its creator reopened it for a new receiver (absent in sessions stored
    /// before reopening existed: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reopens: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CodeSession {
    /// The code: `NNNN-SSSSSS`, or the slot number alone (no leading zeros)
    /// for [`SessionKind::Pake`].
    pub fn code(&self) -> String {
        match self.kind {
            SessionKind::Secret => format!("{:04}-{}", self.slot, self.secret),
            SessionKind::Pake => self.slot.to_string(),
        }
    }

    /// Whether it is created or joined (it counts against the limits).
    pub fn is_live(&self) -> bool {
        matches!(self.state, SessionState::Created | SessionState::Joined)
    }
}

fn random_text(rng: &mut impl RngCore, len: usize) -> String {
    (0..len).map(|_| char::from(ALPHABET[(rng.next_u32() % 32) as usize])).collect()
}

fn random_hex(rng: &mut impl RngCore, bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rng.next_u32() as u8)).collect()
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A code as read by [`parse_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParsedCode {
    /// `NNNN-SSSSSS`: a [`SessionKind::Secret`] session's slot and secret.
    Secret(u16, String),
    /// The slot number alone: a [`SessionKind::Pake`] session's.
    Slot(u16),
}

/// Reads a code as people type it: case-insensitive, spaces ignored, `O` as
/// `0` and `I`/`L` as `1`. One to four digits alone name a
/// [`SessionKind::Pake`] session's slot.
pub fn parse_code(code: &str) -> Result<ParsedCode, Rejection> {
    let bad = || Rejection::new(ErrorCode::BadRequest, "a code looks like 1234-ABCDEF, or 1234 alone");
    if code.len() > 32 {
        return Err(bad());
    }
    let cleaned: String = code
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    if !cleaned.is_empty() && cleaned.len() <= 4 && cleaned.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(ParsedCode::Slot(cleaned.parse().map_err(|_| bad())?));
    }
    let (slot, secret) = cleaned.split_once('-').ok_or_else(bad)?;
    if slot.len() != 4 || !slot.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if secret.len() != SECRET_LEN || !secret.bytes().all(|b| ALPHABET.contains(&b)) {
        return Err(bad());
    }
    Ok(ParsedCode::Secret(slot.parse().map_err(|_| bad())?, secret.to_owned()))
}

/// What [`SessionTable::create`] hands the creator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    /// The session.
    pub session: CodeSession,
    /// The sender's token (shown once).
    pub sender_token: String,
    /// A finished session whose slot the new one took (no slot was free):
    /// it is forgotten, delete it from the store.
    pub evicted: Option<String>,
}

/// The live sessions a new one would join: of its device, of its address
/// group, overall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveSessions {
    /// Live sessions of the creating device.
    pub device: usize,
    /// Live sessions of the creating device's address group.
    pub address: usize,
    /// Live sessions overall.
    pub total: usize,
}

impl SessionLimits {
    /// Whether a device with `live` sessions around it may create another:
    /// `too_many_sessions` (device, overall) or `quota_exceeded` (address).
    pub fn admit_create(&self, live: LiveSessions) -> Result<(), Rejection> {
        let full = |what: String| Rejection::new(ErrorCode::TooManySessions, what);
        if live.device >= self.per_device {
            return Err(full(format!("a device may have {} live sessions", self.per_device)));
        }
        if live.address >= self.per_address {
            return Err(Rejection::new(
                ErrorCode::QuotaExceeded,
                format!("the devices of this address may have {} live sessions", self.per_address),
            ));
        }
        if live.total >= self.max_sessions {
            return Err(full("the server holds its limit of sessions".into()));
        }
        Ok(())
    }

    /// How long a session asked to last `ttl_ms` lasts (default and cap
    /// from the limits; at least 1 ms).
    fn ttl(&self, ttl_ms: Option<u64>) -> u64 {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ttl_ms.unwrap_or_else(|| millis(self.default_ttl)).min(millis(self.max_ttl)).max(1)
    }

    /// How long a finished session keeps its code (late joins hear why it
    /// ended), in ms.
    pub fn grace_ms(&self) -> u64 {
        u64::try_from(self.default_ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The refusal when every code is held by a live session.
pub fn no_free_code() -> Rejection {
    Rejection::new(ErrorCode::TooManySessions, "no free code".to_owned())
}

/// What a new session is before it has its code's slot: its transfer id
/// and deadline (Redis mode claims a slot for them first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDraft {
    /// The new session's transfer id.
    pub transfer_id: String,
    /// Its deadline (unix ms).
    pub expires_at: u64,
}

impl SessionDraft {
    /// A new transfer id, and the deadline `ttl_ms` gives under `limits`.
    pub fn new(now: u64, rng: &mut impl RngCore, limits: &SessionLimits, ttl_ms: Option<u64>) -> SessionDraft {
        SessionDraft { transfer_id: random_hex(rng, 16), expires_at: now.saturating_add(limits.ttl(ttl_ms)) }
    }

    /// The session on `slot`, and the sender's token (shown once).
    pub fn into_session(
        self,
        rng: &mut impl RngCore,
        slot: u16,
        sender: DeviceId,
        origin: Option<IpAddr>,
        kind: SessionKind,
    ) -> (CodeSession, String) {
        let sender_token = random_hex(rng, 32);
        let session = CodeSession {
            transfer_id: self.transfer_id,
            kind,
            slot,
            secret: match kind {
                SessionKind::Secret => random_text(rng, SECRET_LEN),
                SessionKind::Pake => String::new(),
            },
            sender,
            origin,
            receiver: None,
            sender_token_hash: hash(&sender_token),
            receiver_token_hash: None,
            state: SessionState::Created,
            failed_joins: 0,
            expires_at: self.expires_at,
            reason: None,
            reopens: 0,
        };
        (session, sender_token)
    }
}

/// A failed join: the refusal, and the session if the attempt changed it
/// (a wrong secret was counted; `state` says whether it is now locked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinFailure {
    /// The refusal for the joiner.
    pub rejection: Rejection,
    /// The session, when the attempt changed it.
    pub changed: Option<Box<CodeSession>>,
}

/// Every session, by transfer id and by slot.
#[derive(Debug)]
pub struct SessionTable {
    limits: SessionLimits,
    sessions: HashMap<String, CodeSession>,
    slots: HashMap<u16, String>,
}

impl SessionTable {
    /// An empty table.
    pub fn new(limits: SessionLimits) -> Self {
        SessionTable { limits, sessions: HashMap::new(), slots: HashMap::new() }
    }

    /// The limits.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    /// Puts back sessions read from the store.
    pub fn restore(&mut self, sessions: Vec<CodeSession>) {
        for session in sessions {
            self.slots.insert(session.slot, session.transfer_id.clone());
            self.sessions.insert(session.transfer_id.clone(), session);
        }
    }

    /// Creates a session of `kind` for `sender`, whose address group is
    /// `origin`, lasting `ttl_ms` (default and cap from the limits). Only
    /// live sessions count against the limits: a finished one keeps its slot
    /// (late joins hear `session_closed` / `session_expired`) until its grace
    /// time ends or a new session needs the slot.
    pub fn create(
        &mut self,
        now: u64,
        rng: &mut impl RngCore,
        sender: DeviceId,
        origin: Option<IpAddr>,
        kind: SessionKind,
        ttl_ms: Option<u64>,
    ) -> Result<Created, Rejection> {
        let mut live = LiveSessions::default();
        for session in self.sessions.values().filter(|s| s.is_live()) {
            live.total += 1;
            live.device += usize::from(session.sender == sender);
            live.address += usize::from(origin.is_some() && session.origin == origin);
        }
        self.limits.admit_create(live)?;
        let slot = self.free_slot(rng).ok_or_else(no_free_code)?;
        let evicted = self.slots.remove(&slot).inspect(|id| {
            self.sessions.remove(id);
        });
        let draft = SessionDraft::new(now, rng, &self.limits, ttl_ms);
        let (session, sender_token) = draft.into_session(rng, slot, sender, origin, kind);
        self.slots.insert(slot, session.transfer_id.clone());
        self.sessions.insert(session.transfer_id.clone(), session.clone());
        Ok(Created { session, sender_token, evicted })
    }

    /// `slots` random slots, the candidates for a new session's code where
    /// the table is not in this process (Redis mode claims the first that is
    /// free or held by a finished session).
    pub fn candidate_slots(rng: &mut impl RngCore, slots: usize) -> Vec<u16> {
        (0..slots).map(|_| (rng.next_u32() % u32::from(SLOTS)) as u16).collect()
    }

    /// A slot for a new session: a free one if there is one, otherwise one
    /// held by a finished session (there always is one: at most half the
    /// slots are live).
    fn free_slot(&self, rng: &mut impl RngCore) -> Option<u16> {
        let free = |slot: &u16| !self.slots.contains_key(slot);
        let finished = |slot: &u16| {
            self.slots.get(slot).and_then(|id| self.sessions.get(id)).is_none_or(|session| !session.is_live())
        };
        let mut random = (0..64).map(|_| (rng.next_u32() % u32::from(SLOTS)) as u16);
        random
            .find(free)
            .or_else(|| (0..SLOTS).find(free))
            .or_else(|| (0..64).map(|_| (rng.next_u32() % u32::from(SLOTS)) as u16).find(finished))
            .or_else(|| (0..SLOTS).find(finished))
    }

    /// `joiner` joins with `code`. On success returns the session and the
    /// receiver's token.
    pub fn join(
        &mut self,
        now: u64,
        rng: &mut impl RngCore,
        joiner: DeviceId,
        code: &str,
    ) -> Result<(CodeSession, String), JoinFailure> {
        let refuse = |code, message: &str| JoinFailure { rejection: Rejection::new(code, message), changed: None };
        let parsed = parse_code(code).map_err(|rejection| JoinFailure { rejection, changed: None })?;
        let (slot, secret) = match parsed {
            ParsedCode::Secret(slot, secret) => (slot, Some(secret)),
            ParsedCode::Slot(slot) => (slot, None),
        };
        let not_found = "no session has this code";
        let Some(session) = self.slots.get(&slot).and_then(|id| self.sessions.get_mut(id)) else {
            return Err(refuse(ErrorCode::SessionNotFound, not_found));
        };
        // A code of the other kind names no session; it is not a wrong secret.
        let Some(secret) = (match (session.kind, secret) {
            (SessionKind::Secret, Some(secret)) => Some(secret),
            (SessionKind::Pake, None) => None,
            _ => return Err(refuse(ErrorCode::SessionNotFound, not_found)),
        }) else {
            return Self::admit(session, now, rng, joiner);
        };
        if session.secret != secret {
            if session.state != SessionState::Created {
                return Err(refuse(ErrorCode::SessionNotFound, not_found));
            }
            session.failed_joins += 1;
            if session.failed_joins >= self.limits.max_failed_joins {
                session.state = SessionState::Closed;
                session.reason = Some(format!("locked after {} wrong codes", session.failed_joins));
            }
            return Err(JoinFailure {
                rejection: Rejection::new(ErrorCode::SessionNotFound, not_found),
                changed: Some(Box::new(session.clone())),
            });
        }
        Self::admit(session, now, rng, joiner)
    }

    /// Lets `joiner` into `session`, whose code matched, if its state allows.
    fn admit(
        session: &mut CodeSession,
        now: u64,
        rng: &mut impl RngCore,
        joiner: DeviceId,
    ) -> Result<(CodeSession, String), JoinFailure> {
        let refuse = |code, message: &str| JoinFailure { rejection: Rejection::new(code, message), changed: None };
        if session.state.is_live_at(session.expires_at, now) {
            // Due but not swept yet.
            session.state = SessionState::Expired;
            return Err(JoinFailure {
                rejection: Rejection::new(ErrorCode::SessionExpired, "the session expired"),
                changed: Some(Box::new(session.clone())),
            });
        }
        match session.state {
            SessionState::Created if session.sender == joiner => {
                Err(refuse(ErrorCode::SelfAddressed, "the creator cannot join its own session"))
            }
            SessionState::Created => {
                let token = random_hex(rng, 32);
                session.state = SessionState::Joined;
                session.receiver = Some(joiner);
                session.receiver_token_hash = Some(hash(&token));
                Ok((session.clone(), token))
            }
            SessionState::Joined => Err(refuse(ErrorCode::SessionTaken, "the session already has its receiver")),
            SessionState::Closed => Err(refuse(ErrorCode::SessionClosed, "the session is closed")),
            SessionState::Expired => Err(refuse(ErrorCode::SessionExpired, "the session expired")),
        }
    }

    /// Closes a session for the party holding `token`.
    pub fn close(&mut self, transfer_id: &str, token: &str) -> Result<CodeSession, Rejection> {
        let session = self
            .sessions
            .get_mut(transfer_id)
            .ok_or_else(|| Rejection::new(ErrorCode::SessionNotFound, "no session has this transfer id"))?;
        let hashed = hash(token);
        let by = if hashed == session.sender_token_hash {
            "sender"
        } else if session.receiver_token_hash.as_deref() == Some(hashed.as_str()) {
            "receiver"
        } else {
            return Err(Rejection::new(ErrorCode::BadToken, "the token does not belong to this session"));
        };
        match session.state {
            SessionState::Closed => Err(Rejection::new(ErrorCode::SessionClosed, "the session is closed")),
            SessionState::Expired => Err(Rejection::new(ErrorCode::SessionExpired, "the session expired")),
            SessionState::Created | SessionState::Joined => {
                session.state = SessionState::Closed;
                session.reason = Some(format!("closed by the {by}"));
                Ok(session.clone())
            }
        }
    }

    /// Reopens a joined [`SessionKind::Pake`] session for one new join, for its
    /// creator (`token` is the sender's): its receiver and the receiver's token are
    /// forgotten and the next device naming its number joins (and runs a new PAKE
    /// with the creator). Returns the session and the receiver it had. A session
    /// still waiting for its receiver is answered as it is (nothing to reopen).
    ///
    /// Refusals: `session_not_found`, `bad_token` (also the receiver's token: only
    /// the creator reopens), `bad_request` (a `secret` session: its secret was
    /// spent on the first join), `quota_exceeded` (reopened [`MAX_REOPENS`] times
    /// already), `session_closed`, `session_expired`.
    pub fn reopen(
        &mut self,
        now: u64,
        transfer_id: &str,
        token: &str,
    ) -> Result<(CodeSession, Option<DeviceId>), Rejection> {
        let session = self
            .sessions
            .get_mut(transfer_id)
            .ok_or_else(|| Rejection::new(ErrorCode::SessionNotFound, "no session has this transfer id"))?;
        if hash(token) != session.sender_token_hash {
            return Err(Rejection::new(ErrorCode::BadToken, "only the creator's token reopens a session"));
        }
        if session.kind != SessionKind::Pake {
            return Err(Rejection::new(ErrorCode::BadRequest, "only a pake session is reopened"));
        }
        if session.state.is_live_at(session.expires_at, now) {
            return Err(Rejection::new(ErrorCode::SessionExpired, "the session expired"));
        }
        match session.state {
            SessionState::Closed => Err(Rejection::new(ErrorCode::SessionClosed, "the session is closed")),
            SessionState::Expired => Err(Rejection::new(ErrorCode::SessionExpired, "the session expired")),
            SessionState::Created => Ok((session.clone(), None)),
            SessionState::Joined if session.reopens >= MAX_REOPENS => Err(Rejection::new(
                ErrorCode::QuotaExceeded,
                format!("a session is reopened at most {MAX_REOPENS} times"),
            )),
            SessionState::Joined => {
                let receiver = session.receiver.take();
                session.receiver_token_hash = None;
                session.state = SessionState::Created;
                session.reopens += 1;
                Ok((session.clone(), receiver))
            }
        }
    }

    /// The joined sessions `creator` made, live at `now` (at most
    /// [`SessionLimits::per_device`]): what a creator that registers again is
    /// told, as the `joined` it may have missed while it was not registered.
    pub fn joined_by(&self, creator: &DeviceId, now: u64) -> Vec<CodeSession> {
        let mut joined: Vec<CodeSession> = self
            .sessions
            .values()
            .filter(|s| s.sender == *creator && s.state == SessionState::Joined && s.expires_at > now)
            .cloned()
            .collect();
        joined.sort_by_key(|s| s.expires_at);
        joined.truncate(self.limits.per_device);
        joined
    }

    /// Expires live sessions past their deadline (returned, to notify and
    /// store) and forgets finished ones past their grace time (ids returned,
    /// to delete from the store).
    pub fn expire(&mut self, now: u64) -> (Vec<CodeSession>, Vec<String>) {
        let grace = self.limits.grace_ms();
        let mut expired = Vec::new();
        let mut purged = Vec::new();
        for session in self.sessions.values_mut() {
            if session.state.is_live_at(session.expires_at, now) {
                session.state = SessionState::Expired;
                expired.push(session.clone());
            } else if !session.is_live() && session.expires_at.saturating_add(grace) <= now {
                purged.push(session.transfer_id.clone());
            }
        }
        for id in &purged {
            if let Some(session) = self.sessions.remove(id) {
                self.slots.remove(&session.slot);
            }
        }
        (expired, purged)
    }

    /// The earliest time [`expire`](Self::expire) has work.
    pub fn next_deadline(&self) -> Option<u64> {
        let grace = self.limits.grace_ms();
        self.sessions
            .values()
            .map(|s| if s.is_live() { s.expires_at } else { s.expires_at.saturating_add(grace) })
            .min()
    }

    /// Sessions kept now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

impl SessionState {
    /// Live but at or past its deadline.
    fn is_live_at(self, expires_at: u64, now: u64) -> bool {
        matches!(self, SessionState::Created | SessionState::Joined) && expires_at <= now
    }
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
