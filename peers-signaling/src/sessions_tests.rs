//! The session table's tests: every state change, limit and refusal, without I/O.

use super::*;
use proptest::prelude::*;
use rand_core::OsRng;

fn device(n: u8) -> DeviceId {
    format!("{n:02x}").repeat(20).parse().unwrap()
}

fn table() -> SessionTable {
    SessionTable::new(SessionLimits::default())
}

#[test]
fn create_join_close() {
    let mut sessions = table();
    let created = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, None).unwrap();
    assert_eq!(created.session.expires_at, 600_000);
    let code = created.session.code().to_lowercase();
    let (joined, receiver_token) = sessions.join(10, &mut OsRng, device(2), &code).unwrap();
    assert_eq!((joined.state, joined.receiver), (SessionState::Joined, Some(device(2))));
    let again = sessions.join(11, &mut OsRng, device(3), &code).unwrap_err();
    assert_eq!(again.rejection.code, ErrorCode::SessionTaken);
    assert_eq!(sessions.close(&joined.transfer_id, "wrong").unwrap_err().code, ErrorCode::BadToken);
    let closed = sessions.close(&joined.transfer_id, &receiver_token).unwrap();
    assert_eq!(closed.reason.as_deref(), Some("closed by the receiver"));
    assert_eq!(sessions.close(&joined.transfer_id, &created.sender_token).unwrap_err().code, ErrorCode::SessionClosed);
    assert_eq!(sessions.join(12, &mut OsRng, device(3), &code).unwrap_err().rejection.code, ErrorCode::SessionClosed);
}

#[test]
fn wrong_secrets_lock_the_session() {
    let mut sessions = table();
    let created = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, None).unwrap();
    let wrong_secret = if created.session.secret == "AAAAAA" { "BBBBBB" } else { "AAAAAA" };
    let wrong = format!("{:04}-{wrong_secret}", created.session.slot);
    for attempt in 1..=3 {
        let failure = sessions.join(1, &mut OsRng, device(9), &wrong).unwrap_err();
        assert_eq!(failure.rejection.code, ErrorCode::SessionNotFound);
        let changed = failure.changed.unwrap();
        assert_eq!(changed.failed_joins, attempt);
        assert_eq!(changed.state == SessionState::Closed, attempt == 3);
    }
    // Even the right code is useless now.
    let failure = sessions.join(1, &mut OsRng, device(2), &created.session.code()).unwrap_err();
    assert_eq!(failure.rejection.code, ErrorCode::SessionClosed);
}

#[test]
fn sessions_expire_and_are_forgotten_after_a_grace_time() {
    let mut sessions = table();
    let created = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, Some(1000)).unwrap();
    assert_eq!(sessions.next_deadline(), Some(1000));
    let (expired, purged) = sessions.expire(1000);
    assert_eq!((expired.len(), purged.len()), (1, 0));
    let failure = sessions.join(1001, &mut OsRng, device(2), &created.session.code()).unwrap_err();
    assert_eq!(failure.rejection.code, ErrorCode::SessionExpired);
    let (_, purged) = sessions.expire(1000 + 600_000);
    assert_eq!(purged, vec![created.session.transfer_id.clone()]);
    assert!(sessions.is_empty());
    let failure = sessions.join(700_000, &mut OsRng, device(2), &created.session.code()).unwrap_err();
    assert_eq!(failure.rejection.code, ErrorCode::SessionNotFound);
}

#[test]
fn finished_sessions_never_count_and_give_their_slots_up() {
    let limits = SessionLimits { per_device: 10_000, per_address: 10_000, ..SessionLimits::default() };
    let mut sessions = SessionTable::new(limits);
    let origin: IpAddr = "192.0.2.7".parse().unwrap();
    // Twice as many create-and-close as there are slots: every one succeeds.
    for n in 0..usize::from(SLOTS) * 2 {
        let created = sessions.create(n as u64, &mut OsRng, device(1), Some(origin), SessionKind::Secret, None);
        let created = created.unwrap_or_else(|e| panic!("creation {n}: {e:?}"));
        assert_eq!(created.evicted.is_some(), n >= usize::from(SLOTS), "creation {n}");
        sessions.close(&created.session.transfer_id, &created.sender_token).unwrap();
    }
    assert_eq!(sessions.len(), usize::from(SLOTS), "the table never holds more than the slots");
    // A late join on a recent finished session still hears it closed.
    let created = sessions.create(0, &mut OsRng, device(1), Some(origin), SessionKind::Secret, None).unwrap();
    sessions.close(&created.session.transfer_id, &created.sender_token).unwrap();
    let failure = sessions.join(1, &mut OsRng, device(2), &created.session.code()).unwrap_err();
    assert_eq!(failure.rejection.code, ErrorCode::SessionClosed);
}

#[test]
fn live_sessions_are_bounded_per_address() {
    let limits = SessionLimits { per_address: 2, ..SessionLimits::default() };
    let mut sessions = SessionTable::new(limits);
    let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    sessions.create(0, &mut OsRng, device(1), Some(a), SessionKind::Secret, None).unwrap();
    let second = sessions.create(0, &mut OsRng, device(2), Some(a), SessionKind::Pake, None).unwrap();
    let refused = sessions.create(0, &mut OsRng, device(3), Some(a), SessionKind::Secret, None).unwrap_err();
    assert_eq!(refused.code, ErrorCode::QuotaExceeded);
    sessions.create(0, &mut OsRng, device(3), Some(b), SessionKind::Secret, None).unwrap();
    sessions.create(0, &mut OsRng, device(3), None, SessionKind::Secret, None).unwrap();
    sessions.close(&second.session.transfer_id, &second.sender_token).unwrap();
    sessions.create(0, &mut OsRng, device(3), Some(a), SessionKind::Secret, None).unwrap();
}

#[test]
fn creation_is_bounded_per_device_and_overall() {
    let limits = SessionLimits { per_device: 2, max_sessions: 3, ..SessionLimits::default() };
    let mut sessions = SessionTable::new(limits);
    sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, None).unwrap();
    sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, None).unwrap();
    assert_eq!(
        sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, None).unwrap_err().code,
        ErrorCode::TooManySessions
    );
    sessions.create(0, &mut OsRng, device(2), None, SessionKind::Secret, None).unwrap();
    assert_eq!(
        sessions.create(0, &mut OsRng, device(3), None, SessionKind::Secret, None).unwrap_err().code,
        ErrorCode::TooManySessions
    );
    let creator = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, None);
    assert!(creator.is_err());
}

#[test]
fn codes_are_read_forgivingly_and_checked() {
    assert_eq!(parse_code(" 0042-abcdef ").unwrap(), ParsedCode::Secret(42, "ABCDEF".into()));
    assert_eq!(parse_code("1234-o1l0ab").unwrap(), ParsedCode::Secret(1234, "0110AB".into()));
    assert_eq!(parse_code(" 7 ").unwrap(), ParsedCode::Slot(7));
    assert_eq!(parse_code("0042").unwrap(), ParsedCode::Slot(42));
    for bad in ["", "12345", "-12", "12-", "123-ABCDEF", "1234-ABCDE", "1234-ABCDEU", "abcd-ABCDEF", &"9".repeat(100)] {
        assert!(parse_code(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn pake_sessions_are_joined_by_their_number_alone() {
    let mut sessions = table();
    let secret = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, None).unwrap();
    let pake = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Pake, None).unwrap();
    let code = pake.session.code();
    assert_eq!(code, pake.session.slot.to_string());
    // The creator cannot join; a number naming a secret session finds
    // nothing and counts as no wrong secret; a secret code for the number
    // finds nothing either.
    let refused = |sessions: &mut SessionTable, who: u8, code: &str| {
        let failure = sessions.join(1, &mut OsRng, device(who), code).unwrap_err();
        assert_eq!(failure.changed, None, "{code}");
        failure.rejection.code
    };
    assert_eq!(refused(&mut sessions, 1, &code), ErrorCode::SelfAddressed);
    assert_eq!(refused(&mut sessions, 2, &secret.session.slot.to_string()), ErrorCode::SessionNotFound);
    assert_eq!(refused(&mut sessions, 2, &format!("{:04}-ABCDEF", pake.session.slot)), ErrorCode::SessionNotFound);
    // Leading zeros and spaces do not matter.
    let (joined, receiver_token) =
        sessions.join(2, &mut OsRng, device(2), &format!(" {:04}", pake.session.slot)).unwrap();
    assert_eq!(
        (joined.state, joined.receiver, joined.kind),
        (SessionState::Joined, Some(device(2)), SessionKind::Pake)
    );
    assert_eq!(refused(&mut sessions, 3, &code), ErrorCode::SessionTaken);
    // The creator burns it after a failed PAKE: nobody joins it again.
    let closed = sessions.close(&joined.transfer_id, &pake.sender_token).unwrap();
    assert_eq!(closed.reason.as_deref(), Some("closed by the sender"));
    assert_eq!(refused(&mut sessions, 3, &code), ErrorCode::SessionClosed);
    assert_eq!(sessions.close(&joined.transfer_id, &receiver_token).unwrap_err().code, ErrorCode::SessionClosed);
    // Its lifetime is the usual one.
    let (expired, _) = sessions.expire(600_000);
    assert_eq!(expired.iter().map(|s| s.kind).collect::<Vec<_>>(), vec![SessionKind::Secret]);
}

#[test]
fn a_pake_session_is_reopened_by_its_creator_for_one_new_join() {
    let mut sessions = table();
    let pake = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Pake, None).unwrap();
    let id = pake.session.transfer_id.clone();
    let code = pake.session.code();
    // Nothing joined yet: answered as it is.
    assert_eq!(sessions.reopen(1, &id, &pake.sender_token).unwrap().1, None);
    let (_, first_token) = sessions.join(2, &mut OsRng, device(2), &code).unwrap();
    assert_eq!(sessions.reopen(3, &id, &first_token).unwrap_err().code, ErrorCode::BadToken);
    assert_eq!(sessions.reopen(3, "nope", &pake.sender_token).unwrap_err().code, ErrorCode::SessionNotFound);
    let (reopened, gone) = sessions.reopen(3, &id, &pake.sender_token).unwrap();
    assert_eq!(
        (reopened.state, reopened.receiver, reopened.reopens, gone),
        (SessionState::Created, None, 1, Some(device(2)))
    );
    // The former receiver's token no longer closes it; one new device joins.
    assert_eq!(sessions.close(&id, &first_token).unwrap_err().code, ErrorCode::BadToken);
    let (joined, _) = sessions.join(4, &mut OsRng, device(3), &code).unwrap();
    assert_eq!(joined.receiver, Some(device(3)));
    assert_eq!(sessions.join(4, &mut OsRng, device(4), &code).unwrap_err().rejection.code, ErrorCode::SessionTaken);
    // Bounded.
    for _ in 1..MAX_REOPENS {
        sessions.reopen(5, &id, &pake.sender_token).unwrap();
        sessions.join(5, &mut OsRng, device(3), &code).unwrap();
    }
    assert_eq!(sessions.reopen(6, &id, &pake.sender_token).unwrap_err().code, ErrorCode::QuotaExceeded);
    // Burnt (a failed PAKE) or past its deadline: never again.
    sessions.close(&id, &pake.sender_token).unwrap();
    assert_eq!(sessions.reopen(7, &id, &pake.sender_token).unwrap_err().code, ErrorCode::SessionClosed);
    let other = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Pake, Some(100)).unwrap();
    let other_id = other.session.transfer_id.clone();
    sessions.join(1, &mut OsRng, device(2), &other.session.code()).unwrap();
    assert_eq!(sessions.reopen(100, &other_id, &other.sender_token).unwrap_err().code, ErrorCode::SessionExpired);
    // A secret session spent its secret on the first join.
    let secret = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, None).unwrap();
    sessions.join(1, &mut OsRng, device(2), &secret.session.code()).unwrap();
    let refused = sessions.reopen(2, &secret.session.transfer_id, &secret.sender_token).unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadRequest);
}

#[test]
fn a_creator_is_told_only_its_joined_live_sessions() {
    let mut sessions = table();
    let waiting = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Pake, None).unwrap();
    let joined = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Pake, Some(500)).unwrap();
    let theirs = sessions.create(0, &mut OsRng, device(3), None, SessionKind::Pake, None).unwrap();
    let closed = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Pake, None).unwrap();
    sessions.join(1, &mut OsRng, device(2), &joined.session.code()).unwrap();
    sessions.join(1, &mut OsRng, device(1), &theirs.session.code()).unwrap();
    sessions.join(1, &mut OsRng, device(2), &closed.session.code()).unwrap();
    sessions.close(&closed.session.transfer_id, &closed.sender_token).unwrap();
    let told = sessions.joined_by(&device(1), 2);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (told[0].transfer_id.as_str(), told[0].receiver),
        (joined.session.transfer_id.as_str(), Some(device(2)))
    );
    // The receiver of a session is told nothing of it; nor is anyone of a session past its deadline.
    assert!(sessions.joined_by(&device(2), 2).is_empty());
    assert!(sessions.joined_by(&device(1), 500).is_empty());
    // A reopened session waits for a join again: nothing to tell.
    sessions.reopen(3, &joined.session.transfer_id, &joined.sender_token).unwrap();
    assert!(sessions.joined_by(&device(1), 3).is_empty());
    let _ = waiting;
}

#[test]
fn sessions_stored_before_kinds_read_as_secret_ones() {
    let mut sessions = table();
    let created = sessions.create(0, &mut OsRng, device(1), None, SessionKind::Secret, None).unwrap();
    let mut stored = serde_json::to_value(&created.session).unwrap();
    stored.as_object_mut().unwrap().remove("kind");
    let read: CodeSession = serde_json::from_value(stored).unwrap();
    assert_eq!(read, created.session);
}

proptest! {
    #[test]
    fn every_created_code_parses_back(seed in any::<u64>()) {
        let mut rng = rand_core::block::BlockRng::new(Counter(seed));
        let mut sessions = table();
        let created = sessions.create(0, &mut rng, device(1), None, SessionKind::Secret, None).unwrap();
        let parsed = parse_code(&created.session.code()).unwrap();
        prop_assert_eq!(parsed, ParsedCode::Secret(created.session.slot, created.session.secret.clone()));
        let created = sessions.create(0, &mut rng, device(1), None, SessionKind::Pake, None).unwrap();
        prop_assert_eq!(parse_code(&created.session.code()).unwrap(), ParsedCode::Slot(created.session.slot));
        prop_assert_eq!(created.sender_token.len(), 64);
    }
}

/// A deterministic block generator for the property test.
struct Counter(u64);

impl rand_core::block::BlockRngCore for Counter {
    type Item = u32;
    type Results = [u32; 4];
    fn generate(&mut self, results: &mut [u32; 4]) {
        for r in results.iter_mut() {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *r = (self.0 >> 32) as u32;
        }
    }
}
