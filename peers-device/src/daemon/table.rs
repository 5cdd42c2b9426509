//! Status as text tables, for `peers status` and `peers demo`.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::manager::ManagerStatus;

/// Renders connections and groups as two tables.
pub fn render_status(status: &ManagerStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "device {}", status.device);
    for s in &status.signaling {
        let error = s.last_error.as_deref().map_or_else(String::new, |e| format!(" (last error: {e})"));
        let _ = writeln!(out, "signaling {} {} for {}{error}", s.url, s.state.name(), age(s.since));
    }
    let _ = writeln!(
        out,
        "\n{:<12} {:<15} {:<10} {:<7} {:>9} {:>6} {:>8}",
        "PEER", "CLASS", "TRANSPORT", "ACTIVE", "LATENCY", "ERRORS", "UP"
    );
    if status.connections.is_empty() {
        let _ = writeln!(out, "(no connections)");
    }
    for c in &status.connections {
        let state = if c.active {
            "yes"
        } else if c.retiring {
            "retiring"
        } else {
            "standby"
        };
        let _ = writeln!(
            out,
            "{:<12} {:<15} {:<10} {:<7} {:>9} {:>5.0}% {:>8}",
            short(&c.device.to_string()),
            c.class.name(),
            c.transport,
            state,
            c.latency.map_or_else(|| "-".to_owned(), millis),
            c.error_rate * 100.0,
            age(c.since),
        );
    }
    if !status.paths.is_empty() {
        let _ = writeln!(out, "\n{:<12} {:<15} WHY THIS PATH", "PEER", "PATH");
    }
    for p in &status.paths {
        let class = p.class.map_or("-", |c| c.name());
        let _ = writeln!(out, "{:<12} {:<15} {}", short(&p.device.to_string()), class, p.why);
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:<12} {:<10} {:<6} {:>12} {:>8}",
        "GROUP", "MEMBER", "CONNECTED", "READY", "PULLED/HEAD", "WRITTEN"
    );
    for group in &status.groups {
        for member in &group.members {
            let sync = group.sync.iter().find(|s| s.device == member.device);
            let _ = writeln!(
                out,
                "{:<16} {:<12} {:<10} {:<6} {:>12} {:>8}",
                group.group.as_str(),
                short(&member.device.to_string()),
                yes_no(member.connected),
                yes_no(member.ready),
                sync.map_or_else(|| "-".to_owned(), |s| format!("{}/{}", s.checkpoint, s.peer_head)),
                sync.map_or(0, |s| s.written),
            );
        }
    }
    out
}

fn short(id: &str) -> String {
    id.chars().take(10).collect()
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn age(since: SystemTime) -> String {
    let secs = SystemTime::now().duration_since(since).unwrap_or_default().as_secs();
    if secs < 120 { format!("{secs}s") } else { format!("{}m", secs / 60) }
}
