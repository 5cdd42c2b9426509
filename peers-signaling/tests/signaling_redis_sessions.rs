//! Sessions by code with the Redis backend: created on one instance, joined,
//! guessed at, closed and expired through the other, against a real
//! `redis-server` started by each test.

mod common;

use std::time::Duration;

use common::redis_server::{RedisServer, connect, pair, redis_config};
use common::*;
use peers_signaling::ErrorCode;
use peers_signaling::sessions::{SessionKind, SessionState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_created_on_one_instance_is_joined_and_closed_through_the_other() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (_, sender) = connect(&one.url().unwrap(), "sender").await;
    let mut sender_events = sender.events().unwrap();
    let (_, receiver) = connect(&two.url().unwrap(), "receiver").await;
    let (_, intruder) = connect(&two.url().unwrap(), "intruder").await;

    let created = sender.create_session(None).await.unwrap();
    let joined = receiver.join_session(&created.code).await.unwrap();
    assert_eq!((&joined.transfer_id, &joined.sender), (&created.transfer_id, sender.device_id()));
    // The sender hears it on its own instance.
    let (id, state, _) = event(&mut sender_events, session_event).await;
    assert_eq!((id.as_str(), state), (created.transfer_id.as_str(), SessionState::Joined));
    // Exactly one receiver, whichever instance asks.
    assert_eq!(refusal(intruder.join_session(&created.code).await), ErrorCode::SessionTaken);
    // The receiver's token, presented on instance two, closes it; the sender is told.
    receiver.close_session(&created.transfer_id, &joined.receiver_token).await.unwrap();
    let (_, state, reason) = event(&mut sender_events, session_event).await;
    assert_eq!(state, SessionState::Closed, "{reason:?}");
    assert_eq!(refusal(intruder.join_session(&created.code).await), ErrorCode::SessionClosed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pake_session_created_on_one_instance_is_joined_by_number_on_the_other() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (_, sender) = connect(&one.url().unwrap(), "sender").await;
    let mut sender_events = sender.events().unwrap();
    let (_, receiver) = connect(&two.url().unwrap(), "receiver").await;
    let mut receiver_events = receiver.events().unwrap();
    let (_, second) = connect(&one.url().unwrap(), "second").await;

    let created = sender.create_session_of(SessionKind::Pake, None).await.unwrap();
    assert!(created.code.parse::<u16>().is_ok(), "{}", created.code);
    let joined = receiver.join_session(&created.code).await.unwrap();
    assert_eq!((&joined.transfer_id, &joined.sender), (&created.transfer_id, sender.device_id()));
    let (_, state, _) = event(&mut sender_events, session_event).await;
    assert_eq!(state, SessionState::Joined);
    assert_eq!(refusal(second.join_session(&created.code).await), ErrorCode::SessionTaken);
    // Burnt by the sender on instance one; refused on either.
    sender.close_session(&created.transfer_id, &created.sender_token).await.unwrap();
    let (_, state, _) = event(&mut receiver_events, session_event).await;
    assert_eq!(state, SessionState::Closed);
    assert_eq!(refusal(second.join_session(&created.code).await), ErrorCode::SessionClosed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_on_any_instance_count_against_the_same_session() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (_, sender) = connect(&one.url().unwrap(), "sender").await;
    let mut sender_events = sender.events().unwrap();
    let (_, guesser_one) = connect(&one.url().unwrap(), "guesser-1").await;
    let (_, guesser_two) = connect(&two.url().unwrap(), "guesser-2").await;
    let created = sender.create_session(None).await.unwrap();
    let wrong = wrong_code(&created.code);
    // Three wrong secrets in all (the default limit), spread over both instances.
    assert_eq!(refusal(guesser_one.join_session(&wrong).await), ErrorCode::SessionNotFound);
    assert_eq!(refusal(guesser_two.join_session(&wrong).await), ErrorCode::SessionNotFound);
    assert_eq!(refusal(guesser_two.join_session(&wrong).await), ErrorCode::SessionNotFound);
    let (_, state, reason) = event(&mut sender_events, session_event).await;
    assert_eq!(state, SessionState::Closed);
    assert!(reason.as_deref().is_some_and(|r| r.contains("locked")), "{reason:?}");
    // Now even the right code is refused, on either instance.
    assert_eq!(refusal(guesser_one.join_session(&created.code).await), ErrorCode::SessionClosed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_session_expires_and_its_parties_are_told() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (_, sender) = connect(&one.url().unwrap(), "sender").await;
    let mut sender_events = sender.events().unwrap();
    let (_, receiver) = connect(&two.url().unwrap(), "receiver").await;
    let mut receiver_events = receiver.events().unwrap();
    let created = sender.create_session(Some(Duration::from_millis(800))).await.unwrap();
    receiver.join_session(&created.code).await.unwrap();
    assert_eq!(event(&mut sender_events, session_event).await.1, SessionState::Joined);
    for events in [&mut sender_events, &mut receiver_events] {
        let (id, state, _) = event(events, session_event).await;
        assert_eq!((id.as_str(), state), (created.transfer_id.as_str(), SessionState::Expired));
    }
    assert_eq!(refusal(receiver.join_session(&created.code).await), ErrorCode::SessionExpired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_guesses_from_one_address_count_on_every_instance() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.sessions.joins_per_minute_per_ip = 3;
    let (one, two) = pair(config).await;
    let (_, guesser_one) = connect(&one.url().unwrap(), "guesser-1").await;
    let (_, guesser_two) = connect(&two.url().unwrap(), "guesser-2").await;
    // No session exists: every guess is wrong. Two from this address on
    // instance one, then two on instance two: each device and each instance
    // saw at most two, but the address made four, over its three a minute.
    for code in ["1111-AAAAAA", "2222-AAAAAA"] {
        assert_eq!(refusal(guesser_one.join_session(code).await), ErrorCode::SessionNotFound);
    }
    assert_eq!(refusal(guesser_two.join_session("3333-AAAAAA").await), ErrorCode::SessionNotFound);
    let refused = guesser_two.join_session("4444-AAAAAA").await;
    match refused {
        Err(peers_signaling::Error::Refused { rejection, .. }) => {
            assert_eq!(rejection.code, ErrorCode::RateLimited);
            assert!(rejection.message.contains("this address"), "{}", rejection.message);
        }
        other => panic!("the fourth guess from one address was not limited: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pake_session_reopened_on_one_instance_is_joined_again_on_the_other() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (_, sender) = connect(&one.url().unwrap(), "sender").await;
    let mut sender_events = sender.events().unwrap();
    let (_, first) = connect(&two.url().unwrap(), "first").await;

    let created = sender.create_session_of(SessionKind::Pake, None).await.unwrap();
    let joined = first.join_session(&created.code).await.unwrap();
    assert_eq!(event(&mut sender_events, session_event).await.1, SessionState::Joined);
    assert_eq!(refusal(first.reopen_session(&created.transfer_id, &joined.receiver_token).await), ErrorCode::BadToken);
    first.close().await;
    sender.reopen_session(&created.transfer_id, &created.sender_token).await.unwrap();
    let (_, returning) = connect(&two.url().unwrap(), "returning").await;
    returning.join_session(&created.code).await.unwrap();
    assert_eq!(event(&mut sender_events, session_event).await.1, SessionState::Joined);
    let (_, late) = connect(&one.url().unwrap(), "late").await;
    assert_eq!(refusal(late.join_session(&created.code).await), ErrorCode::SessionTaken);
    sender.close_session(&created.transfer_id, &created.sender_token).await.unwrap();
    assert_eq!(
        refusal(sender.reopen_session(&created.transfer_id, &created.sender_token).await),
        ErrorCode::SessionClosed
    );
}

/// Sessions live under keys of their own: creations made at once on two
/// instances get distinct codes (each code's slot is claimed in Redis), each
/// is found by its code through the other instance, and no key holds every
/// session or locks them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_made_at_once_on_two_instances_are_unique_and_no_request_locks_every_session() {
    let redis = RedisServer::start().await;
    let mut config = redis_config(&redis);
    config.sessions.creates_per_minute_per_ip = 1000;
    config.sessions.per_address = 1000;
    let (one, two) = pair(config).await;
    let mut creators = Vec::new();
    for n in 0..6 {
        let url = if n % 2 == 0 { one.url().unwrap() } else { two.url().unwrap() };
        creators.push(connect(&url, &format!("creator-{n}")).await.1);
    }
    let creations = creators.iter().flat_map(|creator| (0..5).map(move |_| creator.create_session(None)));
    let created: Vec<_> = futures_util::future::join_all(creations).await.into_iter().map(Result::unwrap).collect();
    let codes: std::collections::HashSet<&str> = created.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(codes.len(), created.len(), "every code is unique");
    let live: Option<u64> = redis.query(redis::cmd("ZCARD").arg("test:{sl}:live")).await;
    assert_eq!(live, Some(created.len() as u64), "each live session is counted once");

    let (_, joiner) = connect(&two.url().unwrap(), "joiner").await;
    for (n, session) in created.iter().enumerate().step_by(7) {
        let joined = joiner.join_session(&session.code).await.unwrap();
        assert_eq!((&joined.transfer_id, &joined.sender), (&session.transfer_id, creators[n / 5].device_id()));
    }
    let all: Option<String> = redis.query(redis::cmd("TYPE").arg("test:sessions")).await;
    let lock: Option<String> = redis.query(redis::cmd("TYPE").arg("test:sessions:lock")).await;
    assert_eq!((all.as_deref(), lock.as_deref()), (Some("none"), Some("none")));
}

/// Two devices joining one session at once through two instances: its lock
/// lets exactly one in; the other is told the session is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_at_once_through_two_instances_let_exactly_one_receiver_in() {
    let redis = RedisServer::start().await;
    let (one, two) = pair(redis_config(&redis)).await;
    let (_, sender) = connect(&one.url().unwrap(), "sender").await;
    let (_, left) = connect(&one.url().unwrap(), "left").await;
    let (_, right) = connect(&two.url().unwrap(), "right").await;
    // Four rounds: eight joins, within the address's ten a minute.
    for _ in 0..4 {
        let created = sender.create_session(None).await.unwrap();
        let (a, b) = tokio::join!(left.join_session(&created.code), right.join_session(&created.code));
        let joined = [a.is_ok(), b.is_ok()];
        assert_eq!(joined.iter().filter(|ok| **ok).count(), 1, "exactly one receiver");
        let refused = if joined[0] { refusal(b) } else { refusal(a) };
        assert_eq!(refused, ErrorCode::SessionTaken);
        sender.close_session(&created.transfer_id, &created.sender_token).await.unwrap();
    }
}
