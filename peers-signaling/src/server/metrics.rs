//! The server's metrics, named in one place. They go to whatever `metrics`
//! recorder the process installed; [`SignalingServer`](crate::SignalingServer)
//! installs a Prometheus one (once per process) for `/metrics`.

use crate::protocol::ErrorCode;

pub(crate) fn registered() {
    metrics::counter!("signaling_registrations_total").increment(1);
}

pub(crate) fn registration_failed(code: ErrorCode) {
    metrics::counter!("signaling_registration_failures_total", "code" => code.as_str()).increment(1);
}

pub(crate) fn replaced() {
    metrics::counter!("signaling_replaced_total").increment(1);
}

/// `outcome`: delivered, queued, expired, delivered_from_queue.
pub(crate) fn signal_outcome(outcome: &'static str) {
    metrics::counter!("signaling_signals_total", "outcome" => outcome).increment(1);
}

pub(crate) fn rejected(code: ErrorCode) {
    metrics::counter!("signaling_rejections_total", "code" => code.as_str()).increment(1);
}

pub(crate) fn expired() {
    metrics::counter!("signaling_expired_total").increment(1);
}

pub(crate) fn notices_dropped(count: usize) {
    metrics::counter!("signaling_notices_dropped_total").increment(count as u64);
}

pub(crate) fn store_errors() {
    metrics::counter!("signaling_store_errors_total").increment(1);
}

pub(crate) fn queue_depth(messages: usize, bytes: usize, notices: usize) {
    metrics::gauge!("signaling_queue_messages").set(messages as f64);
    metrics::gauge!("signaling_queue_bytes").set(bytes as f64);
    metrics::gauge!("signaling_notices_pending").set(notices as f64);
}

pub(crate) fn connections(count: usize, online: usize) {
    metrics::gauge!("signaling_connections").set(count as f64);
    metrics::gauge!("signaling_devices_online").set(online as f64);
}

pub(crate) fn sessions(count: usize) {
    metrics::gauge!("signaling_sessions").set(count as f64);
}

/// `event`: created, joined, closed, locked, join_failed.
pub(crate) fn session_event(event: &'static str) {
    metrics::counter!("signaling_session_events_total", "event" => event).increment(1);
}

pub(crate) fn relays(count: usize) {
    metrics::gauge!("signaling_relays_open").set(count as f64);
}

/// A connection closed because it stopped reading: its write stalled
/// (`stalled`) or its outgoing buffer was full (`buffer_full`).
pub(crate) fn slow_client(reason: &'static str) {
    metrics::counter!("signaling_slow_clients_total", "reason" => reason).increment(1);
}

pub(crate) fn stalled() {
    slow_client("stalled");
}

/// Creates every metric at zero, so `/metrics` lists them all from the start
/// (labelled ones with each label value the docs name).
pub(crate) fn start() {
    for name in ["signaling_registrations_total", "signaling_replaced_total", "signaling_expired_total"] {
        metrics::counter!(name).increment(0);
    }
    metrics::counter!("signaling_notices_dropped_total").increment(0);
    metrics::counter!("signaling_store_errors_total").increment(0);
    for code in ErrorCode::SENT {
        metrics::counter!("signaling_registration_failures_total", "code" => code.as_str()).increment(0);
        metrics::counter!("signaling_rejections_total", "code" => code.as_str()).increment(0);
    }
    for outcome in ["delivered", "queued", "expired", "delivered_from_queue"] {
        metrics::counter!("signaling_signals_total", "outcome" => outcome).increment(0);
    }
    for event in ["created", "joined", "closed", "locked", "join_failed", "reopened"] {
        metrics::counter!("signaling_session_events_total", "event" => event).increment(0);
    }
    for reason in ["buffer_full", "stalled"] {
        metrics::counter!("signaling_slow_clients_total", "reason" => reason).increment(0);
    }
    for gauge in [
        "signaling_queue_messages",
        "signaling_queue_bytes",
        "signaling_notices_pending",
        "signaling_connections",
        "signaling_devices_online",
        "signaling_sessions",
        "signaling_relays_open",
    ] {
        metrics::gauge!(gauge).increment(0.0);
    }
}

pub(crate) fn devices_online(online: usize) {
    metrics::gauge!("signaling_devices_online").set(online as f64);
}
