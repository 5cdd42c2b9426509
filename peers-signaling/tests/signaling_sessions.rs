//! Transfer sessions joined by a code: one receiver, close, expiry, guess
//! limits per code and per address, and survival across a restart.

mod common;

use std::time::Duration;

use common::*;
use peers_signaling::sessions::{SessionKind, SessionState};
use peers_signaling::store::StoreConfig;
use peers_signaling::{ErrorCode, ServerConfig, SignalingClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_receiver_joins_by_code_and_either_side_closes() {
    let server = server(ServerConfig::in_memory()).await;
    let sender = client(&server, &keys("sender")).await;
    let mut sender_events = sender.events().unwrap();
    let receiver = client(&server, &keys("receiver")).await;
    let mut receiver_events = receiver.events().unwrap();
    let intruder = client(&server, &keys("intruder")).await;

    let created = sender.create_session(None).await.unwrap();
    assert_eq!(created.code.len(), 11, "{}", created.code);
    assert_eq!(refusal(sender.join_session(&created.code).await), ErrorCode::SelfAddressed);
    // People type codes in lower case.
    let joined = receiver.join_session(&created.code.to_lowercase()).await.unwrap();
    assert_eq!((&joined.transfer_id, &joined.sender), (&created.transfer_id, sender.device_id()));
    let (id, state, _) = event(&mut sender_events, session_event).await;
    assert_eq!((id.as_str(), state), (created.transfer_id.as_str(), SessionState::Joined));

    // Exactly one receiver.
    assert_eq!(refusal(intruder.join_session(&created.code).await), ErrorCode::SessionTaken);
    assert_eq!(refusal(receiver.join_session(&created.code).await), ErrorCode::SessionTaken);
    // Only a party's token closes it.
    assert_eq!(refusal(intruder.close_session(&created.transfer_id, "guess").await), ErrorCode::BadToken);
    sender.close_session(&created.transfer_id, &created.sender_token).await.unwrap();
    let (_, state, reason) = event(&mut receiver_events, session_event).await;
    assert_eq!((state, reason.as_deref()), (SessionState::Closed, Some("closed by the sender")));
    assert_eq!(refusal(intruder.join_session(&created.code).await), ErrorCode::SessionClosed);
    assert_eq!(
        refusal(receiver.close_session(&created.transfer_id, &joined.receiver_token).await),
        ErrorCode::SessionClosed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_lock_the_session_and_guessing_is_limited_per_address() {
    let mut config = ServerConfig::in_memory();
    config.sessions.joins_per_minute_per_ip = 6;
    let server = server(config).await;
    let sender = client(&server, &keys("sender")).await;
    let mut sender_events = sender.events().unwrap();
    let guesser = client(&server, &keys("guesser")).await;
    let created = sender.create_session(None).await.unwrap();
    for _ in 0..3 {
        assert_eq!(refusal(guesser.join_session(&wrong_code(&created.code)).await), ErrorCode::SessionNotFound);
    }
    let (_, state, reason) = event(&mut sender_events, session_event).await;
    assert_eq!(state, SessionState::Closed);
    assert!(reason.unwrap().contains("locked"));
    // The right code no longer works for anyone.
    let late = client(&server, &keys("late")).await;
    assert_eq!(refusal(late.join_session(&created.code).await), ErrorCode::SessionClosed);

    // Malformed codes are refused as such (and counted against the address).
    assert_eq!(refusal(guesser.join_session("not a code").await), ErrorCode::BadRequest);
    // 6 joins per minute from this address: 5 used so far (3 + late's 1 + 1).
    assert_eq!(refusal(guesser.join_session("0000-000000").await), ErrorCode::SessionNotFound);
    assert_eq!(refusal(guesser.join_session("0000-000000").await), ErrorCode::RateLimited);
    assert_eq!(refusal(late.join_session("0000-000000").await), ErrorCode::RateLimited, "the limit is per address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_and_late_joins_are_told_so() {
    let server = server(ServerConfig::in_memory()).await;
    let sender = client(&server, &keys("sender")).await;
    let mut sender_events = sender.events().unwrap();
    let created = sender.create_session(Some(Duration::from_millis(300))).await.unwrap();
    let (id, state, _) = event(&mut sender_events, session_event).await;
    assert_eq!((id, state), (created.transfer_id.clone(), SessionState::Expired));
    let receiver = client(&server, &keys("receiver")).await;
    assert_eq!(refusal(receiver.join_session(&created.code).await), ErrorCode::SessionExpired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_with_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.store = StoreConfig::Sqlite { data_dir: dir.path().to_owned() };
    let sender_keys = keys("sender");
    let first = server(config.clone()).await;
    let created = client(&first, &sender_keys).await.create_session(None).await.unwrap();
    first.shutdown().await;

    let second = server(config).await;
    let sender = client(&second, &sender_keys).await;
    let mut sender_events = sender.events().unwrap();
    let receiver: SignalingClient = client(&second, &keys("receiver")).await;
    let joined = receiver.join_session(&created.code).await.unwrap();
    assert_eq!(joined.transfer_id, created.transfer_id);
    assert_eq!(event(&mut sender_events, session_event).await.1, SessionState::Joined);
    // The sender's token from before the restart still closes it.
    sender.close_session(&created.transfer_id, &created.sender_token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pake_session_is_joined_by_its_number_and_burnt_by_its_creator() {
    let server = server(ServerConfig::in_memory()).await;
    let sender = client(&server, &keys("sender")).await;
    let mut sender_events = sender.events().unwrap();
    let receiver = client(&server, &keys("receiver")).await;
    let mut receiver_events = receiver.events().unwrap();
    let second = client(&server, &keys("second")).await;

    let created = sender.create_session_of(SessionKind::Pake, None).await.unwrap();
    let number: u16 = created.code.parse().unwrap_or_else(|_| panic!("not a number: {}", created.code));
    // The number with a server secret appended names no session.
    assert_eq!(refusal(receiver.join_session(&format!("{number:04}-ABCDEF")).await), ErrorCode::SessionNotFound);
    assert_eq!(refusal(sender.join_session(&created.code).await), ErrorCode::SelfAddressed);
    let joined = receiver.join_session(&format!("{number:04}")).await.unwrap();
    assert_eq!((&joined.transfer_id, &joined.sender), (&created.transfer_id, sender.device_id()));
    let (_, state, _) = event(&mut sender_events, session_event).await;
    assert_eq!(state, SessionState::Joined);
    assert_eq!(refusal(second.join_session(&created.code).await), ErrorCode::SessionTaken);
    // The PAKE failed: the sender burns the session; nobody joins it again.
    sender.close_session(&created.transfer_id, &created.sender_token).await.unwrap();
    let (_, state, reason) = event(&mut receiver_events, session_event).await;
    assert_eq!((state, reason.as_deref()), (SessionState::Closed, Some("closed by the sender")));
    assert_eq!(refusal(second.join_session(&created.code).await), ErrorCode::SessionClosed);
    // An ordinary session's number alone finds nothing.
    let ordinary = sender.create_session(None).await.unwrap();
    let (slot, _) = ordinary.code.split_once('-').unwrap();
    assert_eq!(refusal(second.join_session(slot).await), ErrorCode::SessionNotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_creator_reopens_a_pake_session_for_a_returning_receiver() {
    let server = server(ServerConfig::in_memory()).await;
    let sender = client(&server, &keys("sender")).await;
    let mut sender_events = sender.events().unwrap();
    let first = client(&server, &keys("first")).await;
    let created = sender.create_session_of(SessionKind::Pake, None).await.unwrap();
    let joined = first.join_session(&created.code).await.unwrap();
    assert_eq!(event(&mut sender_events, session_event).await.1, SessionState::Joined);
    // Only the creator reopens; the receiver vanishes (its process died).
    assert_eq!(refusal(first.reopen_session(&created.transfer_id, &joined.receiver_token).await), ErrorCode::BadToken);
    first.close().await;
    sender.reopen_session(&created.transfer_id, &created.sender_token).await.unwrap();
    // The same number takes one new receiver, and the sender hears of it.
    let returning = client(&server, &keys("returning")).await;
    let again = returning.join_session(&created.code).await.unwrap();
    assert_eq!(again.transfer_id, created.transfer_id);
    let peer = event(&mut sender_events, |e| match e {
        peers_signaling::ClientEvent::Session { state: SessionState::Joined, peer, .. } => Some(*peer),
        _ => None,
    })
    .await;
    assert_eq!(peer, Some(*returning.device_id()));
    let late = client(&server, &keys("late")).await;
    assert_eq!(refusal(late.join_session(&created.code).await), ErrorCode::SessionTaken);
    // A failed PAKE with whoever joined burns it: no reopening, no joining.
    sender.close_session(&created.transfer_id, &created.sender_token).await.unwrap();
    let reopen = sender.reopen_session(&created.transfer_id, &created.sender_token).await;
    assert_eq!(refusal(reopen), ErrorCode::SessionClosed);
    assert_eq!(refusal(late.join_session(&created.code).await), ErrorCode::SessionClosed);
    // A secret session is not reopened.
    let ordinary = sender.create_session(None).await.unwrap();
    let reopen = sender.reopen_session(&ordinary.transfer_id, &ordinary.sender_token).await;
    assert_eq!(refusal(reopen), ErrorCode::BadRequest);
}
