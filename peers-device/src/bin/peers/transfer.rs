//! `peers send` and `peers receive`: files by code through a signaling server. Neither
//! needs a daemon or a data directory: each side uses a fresh device key. `peers send
//! --to DEVICE` instead asks the running daemon to send to a device it trusts (no code)
//! and follows its progress (`sending`, `status`, then `done` or `error`).
//!
//! Human output: the code and questions on standard output, progress bars and status
//! lines on standard error (drawn only on a terminal). `--json`: one JSON object a
//! line on standard output, each with an `"event"`: `code`, `offer` (with `staged`: the
//! bytes an earlier attempt left in `--out`, then accepted without asking), `status`
//! (`stage` is `waiting-return` while a sender waits for its receiver to run the code
//! again), `path` (the transfer moved to another path: `from`, `to`, `bytes_done`),
//! `done` or `error`.

use std::io::{BufRead, IsTerminal, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use peers_device::daemon::DataDir;
use peers_device::daemon::control::{self, ControlRequest, ControlResponse};
use peers_device::transfer::{
    Canceller, EntryKind, LinkOptions, Manifest, ReceiveOptions, SendOptions, SignalingLink, Stage, Status,
    TransferCode, TransferProgress, receive, send, staged_bytes,
};
use peers_transport_webrtc::WebRtcConfig;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::CliResult;

/// Least time between two `status` lines of `--json` while bytes move.
const JSON_INTERVAL: Duration = Duration::from_millis(250);

/// `peers send`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct SendArgs {
    /// Files and directories to send (directories with everything in them;
    /// symbolic links are not followed, and are left out).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Send to this trusted device through the running daemon, over the connection
    /// it has to it (no code, no signaling arguments): its device id, a unique
    /// prefix of it, or its share code. The device's daemon stores what arrives in
    /// its inbox (`peers run --inbox`). Ctrl-C cancels the transfer: the other daemon
    /// discards what it received of it.
    #[arg(long, value_name = "DEVICE")]
    to: Option<String>,
    /// The signaling server (as for `peers run`; several separated by commas are
    /// tried in order).
    #[arg(
        long = "signaling",
        value_name = "URL",
        env = "PEERS_SIGNALING_URL",
        value_delimiter = ',',
        required_unless_present = "to"
    )]
    signaling: Vec<String>,
    #[command(flatten)]
    code: CodeArgs,
    #[command(flatten)]
    route: PathArgs,
    /// Seconds to wait, when the receiver vanishes mid-way (its process died, its
    /// network went away), for it to run `peers receive` with the same code again;
    /// it then resumes after the last chunk it verified. At most 8 times, and never
    /// past the code's lifetime (--minutes). 0: fail at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    rejoin_wait: u64,
    /// One JSON object a line instead of text and progress bars.
    #[arg(long)]
    json: bool,
}

/// `peers receive`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ReceiveArgs {
    /// The code the sender shows, for example 7-maple-orbit.
    code: String,
    /// Where to put what arrives (created if missing). Existing files are never
    /// replaced: a name that is taken gets " (1)" added.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Accept without asking.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    signaling: SignalingArgs,
    #[command(flatten)]
    route: PathArgs,
    /// One JSON object a line instead of text and progress bars.
    #[arg(long)]
    json: bool,
}

/// `--signaling`, for every command that meets the other device by code.
#[derive(clap::Args, Debug)]
pub(crate) struct SignalingArgs {
    /// The signaling server (as for `peers run`; several separated by commas are
    /// tried in order).
    #[arg(long = "signaling", value_name = "URL", env = "PEERS_SIGNALING_URL", value_delimiter = ',', required = true)]
    urls: Vec<String>,
}

impl SignalingArgs {
    /// How to reach the other device.
    pub(crate) fn link(self) -> LinkOptions {
        LinkOptions::new(self.urls)
    }
}

/// Which paths a transfer may take besides the signaling server's relay.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathChoice {
    /// The relay at once, then the receiver's socket (it listens on every
    /// interface for the transfer's life; dialed directly over TCP) or WebRTC
    /// (direct, or through TURN), whichever comes up and is better.
    All,
    /// The relay only.
    Relay,
    /// The relay, then the receiver's socket only (socket.io over TCP, dialed
    /// directly; no WebRTC).
    Local,
    /// The relay, then WebRTC over loopback only (both sides on this machine:
    /// tests, benchmarks; no local socket).
    Loopback,
}

/// `--paths`, for `peers send` and `peers receive`.
#[derive(clap::Args, Debug)]
pub(crate) struct PathArgs {
    /// Paths besides the relay: the transfer starts on the signaling server's relay
    /// and moves to a better path (a local socket, WebRTC direct, then TURN) when one
    /// comes up, without starting over.
    #[arg(long = "paths", value_name = "WHICH", value_enum, default_value = "all")]
    via: PathChoice,
}

impl PathArgs {
    /// `link` with these paths.
    pub(crate) fn apply(&self, mut link: LinkOptions) -> LinkOptions {
        let every_interface = Some(Ipv4Addr::UNSPECIFIED.into());
        (link.webrtc, link.local) = match self.via {
            PathChoice::All => (Some(WebRtcConfig::default()), every_interface),
            PathChoice::Relay => (None, None),
            PathChoice::Local => (None, every_interface),
            PathChoice::Loopback => (Some(WebRtcConfig::loopback()), None),
        };
        link
    }
}

/// `--words` and `--minutes`, for every command that makes a code.
#[derive(clap::Args, Debug)]
pub(crate) struct CodeArgs {
    /// Words in the code: 2 (16 bits, one guess per code) to 4.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=4))]
    words: u8,
    /// Minutes the code stays valid (the server may cap it).
    #[arg(long, default_value_t = 10)]
    minutes: u64,
}

impl CodeArgs {
    /// Words in the code.
    pub(crate) fn words(&self) -> usize {
        usize::from(self.words)
    }

    /// How long the code stays valid (at least a minute).
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_secs(self.minutes.max(1) * 60)
    }

    /// Shows `code`: a `code` event, or the code and what to type on the other device;
    /// and `link` (the server's receive page with the code), when there is one.
    pub(crate) fn show(&self, code: &TransferCode, link: Option<&str>, json: bool, command: &str) {
        let ttl = self.ttl();
        match json {
            true => {
                let mut event = json!({ "event": "code", "code": code.to_string(), "expires_in_s": ttl.as_secs() });
                if let Some(link) = link {
                    event["link"] = link.into();
                }
                line(event)
            }
            false => {
                println!("code: {code}   (valid {} min)", ttl.as_secs() / 60);
                println!("on the other device: peers {command} {code}");
                if let Some(link) = link {
                    println!("or in a browser: {link}");
                }
            }
        }
    }
}

/// Passes `result` on; with `--json`, an error is also an `error` event.
pub(crate) fn reported<T>(result: CliResult<T>, json: bool) -> CliResult<T> {
    if let (Err(err), true) = (&result, json) {
        line(json!({ "event": "error", "message": err.to_string() }));
    }
    result
}

pub(crate) fn line(value: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Runs `peers send`: by code, or through the daemon of `data` with `--to`.
pub(crate) async fn run_send(args: SendArgs, data: &DataDir, timeout: Duration) -> CliResult<()> {
    let json = args.json;
    let result = match args.to.clone() {
        Some(device) => send_through_daemon(device, args, data, timeout).await,
        None => send_inner(args).await,
    };
    reported(result, json)
}

/// Asks the daemon to send, then follows the transfer (every [`JSON_INTERVAL`]) until
/// it ends.
async fn send_through_daemon(device: String, args: SendArgs, data: &DataDir, timeout: Duration) -> CliResult<()> {
    let paths = args.paths.iter().map(std::path::absolute).collect::<Result<Vec<_>, _>>()?;
    let socket = data.control_socket();
    let ask = |request: ControlRequest| {
        let socket = socket.clone();
        async move {
            match control::request(&socket, &request, timeout).await? {
                ControlResponse::Error { message } => Err(format!("the daemon refused: {message}").into()),
                answer => Ok::<_, Box<dyn std::error::Error>>(answer),
            }
        }
    };
    let ControlResponse::Sending { id, device, bytes } = ask(ControlRequest::Send { device, paths }).await? else {
        return Err("the daemon answered something else".into());
    };
    match args.json {
        true => line(json!({ "event": "sending", "device": device, "bytes": bytes })),
        false => eprintln!("sending {} to {device} through the daemon…", HumanBytes(bytes)),
    }
    let progress = TransferProgress { bytes_total: bytes, ..TransferProgress::default() };
    let status = Status { stage: Stage::Offered, signaling: SignalingLink::Registered, class: None, progress };
    let (status_tx, status) = watch::channel(status);
    let display = tokio::spawn(show(status, args.json, Side::Sender));
    // Ctrl-C cancels the transfer in the daemon (the receiving daemon discards what it
    // staged); the daemon's answer ends the loop as for any other end.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut cancelling = false;
    let outcome = loop {
        tokio::select! {
            () = tokio::time::sleep(JSON_INTERVAL) => {}
            signal = &mut interrupted, if !cancelling => {
                cancelling = true;
                if signal.is_ok() {
                    eprintln!("interrupted: cancelling the transfer in the daemon");
                    ask(ControlRequest::SendCancel { id }).await?;
                }
            }
        }
        let ControlResponse::SendStatus { state } = ask(ControlRequest::SendStatus { id }).await? else {
            return Err("the daemon answered something else".into());
        };
        status_tx.send_modify(|s| {
            s.class = state.path;
            s.progress = TransferProgress {
                bytes_done: state.bytes_done,
                bytes_total: state.bytes_total,
                bytes_resumed: state.bytes_resumed,
            };
            s.stage = match state.outcome {
                Some(Ok(())) => Stage::Done,
                _ if state.bytes_done > state.bytes_resumed => Stage::Moving,
                _ => s.stage,
            };
        });
        if let Some(outcome) = state.outcome {
            break outcome;
        }
    };
    drop(status_tx);
    let _ = display.await;
    outcome?;
    match args.json {
        true => line(json!({ "event": "done", "bytes": bytes, "device": device })),
        false => println!("sent {} ({bytes} bytes) to {device}, every chunk verified by its daemon", HumanBytes(bytes)),
    }
    Ok(())
}

async fn send_inner(args: SendArgs) -> CliResult<()> {
    let mut options = SendOptions::new(args.route.apply(LinkOptions::new(args.signaling)));
    options.words = args.code.words();
    options.code_ttl = args.code.ttl();
    options.rejoin_wait = Duration::from_secs(args.rejoin_wait);
    let (code, handle) = send(args.paths, options).await?;
    for path in &handle.skipped {
        eprintln!("left out (a symbolic link or special file): {}", path.display());
    }
    args.code.show(&code, handle.receive_link.as_deref(), args.json, "receive");
    let display = tokio::spawn(show(handle.status.clone(), args.json, Side::Sender));
    let interrupt = cancel_on_interrupt(handle.canceller());
    let result = handle.finished().await;
    interrupt.abort();
    let last = display.await.ok().flatten();
    result?;
    let bytes = last.map_or(0, |s| s.progress.bytes_total);
    match args.json {
        true => line(json!({ "event": "done", "bytes": bytes })),
        false => println!("sent {} ({bytes} bytes), every chunk verified by the receiver", HumanBytes(bytes)),
    }
    Ok(())
}

/// Runs `peers receive`.
pub(crate) async fn run_receive(args: ReceiveArgs) -> CliResult<()> {
    let json = args.json;
    reported(receive_inner(args).await, json)
}

async fn receive_inner(args: ReceiveArgs) -> CliResult<()> {
    let code: TransferCode = args.code.parse()?;
    let (json, yes, out) = (args.json, args.yes, args.out.clone());
    let shown_out = out.display().to_string();
    let staged_in = out.clone();
    let decide = Arc::new(move |manifest: &Manifest| {
        let offer = Offer::of(manifest);
        let shown_out = shown_out.clone();
        // These exact files (same manifest digest) were accepted into this directory
        // before and partly arrived: not asked again.
        let staged = staged_bytes(&staged_in, manifest);
        Box::pin(async move {
            match json {
                true => line(offer.json(staged)),
                false => println!("{} into {shown_out}", offer.text()),
            }
            if let Some(bytes) = staged {
                if !json {
                    println!("resuming: {} of it arrived before and is kept", HumanBytes(bytes));
                }
                return true;
            }
            if yes {
                return true;
            }
            tokio::task::spawn_blocking(move || ask(json)).await.unwrap_or(false)
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
    });
    let options = ReceiveOptions { out_dir: out.clone(), decide };
    let handle = receive(code, args.route.apply(args.signaling.link()), options).await?;
    let display = tokio::spawn(show(handle.status.clone(), json, Side::Receiver));
    let interrupt = cancel_on_interrupt(handle.canceller());
    let result = handle.finished().await;
    interrupt.abort();
    let last = display.await.ok().flatten();
    if let (Err(_), Some(last)) = (&result, last) {
        let kept = last.progress.bytes_done;
        if kept > 0 && kept < last.progress.bytes_total {
            eprintln!(
                "kept {} verified of {} (hidden in {}): the same files sent again into it resume there",
                HumanBytes(kept),
                HumanBytes(last.progress.bytes_total),
                out.display()
            );
        }
    }
    let received = result?;
    match json {
        true => line(json!({
            "event": "done", "stored": received.stored, "bytes": received.bytes, "out": out.display().to_string(),
        })),
        false => println!(
            "received {} ({}) into {}, every chunk verified",
            received.stored.join(", "),
            HumanBytes(received.bytes),
            out.display()
        ),
    }
    Ok(())
}

/// Cancels the transfer on the first Ctrl-C (the other side is told why); a second
/// one quits at once.
fn cancel_on_interrupt(canceller: Canceller) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: cancelling and telling the other side (Ctrl-C again quits at once)");
            canceller.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    })
}

/// Asks on the terminal (or reads a line of standard input); only y or yes accepts.
fn ask(json: bool) -> bool {
    if !json {
        print!("accept? [y/N] ");
        let _ = std::io::stdout().flush();
    }
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// What an offer holds, for the person deciding.
struct Offer {
    /// Top-level names, directories with a trailing `/`.
    names: Vec<String>,
    files: usize,
    bytes: u64,
}

/// Names listed before "and N more".
const NAMES_SHOWN: usize = 10;

impl Offer {
    fn of(manifest: &Manifest) -> Self {
        let names = manifest
            .entries
            .iter()
            .filter(|e| !e.path.contains('/'))
            .map(|e| match e.kind {
                EntryKind::Dir => format!("{}/", e.path),
                EntryKind::File { .. } => e.path.clone(),
            })
            .collect();
        Offer { names, files: manifest.files().count(), bytes: manifest.total_size() }
    }

    /// The `offer` event; `staged`: bytes kept from an earlier attempt (then it is
    /// accepted without asking).
    fn json(&self, staged: Option<u64>) -> Value {
        json!({ "event": "offer", "names": self.names, "files": self.files, "bytes": self.bytes, "staged": staged })
    }

    fn text(&self) -> String {
        let mut names = self.names.iter().take(NAMES_SHOWN).cloned().collect::<Vec<_>>().join(", ");
        if self.names.len() > NAMES_SHOWN {
            names.push_str(&format!(" and {} more", self.names.len() - NAMES_SHOWN));
        }
        format!("offered: {names}: {} files, {} in total,", self.files, HumanBytes(self.bytes))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Sender,
    Receiver,
}

/// The line for entering `stage`, if it has one.
fn stage_line(stage: Stage, side: Side, status: &Status) -> Option<String> {
    let class = status.class.map_or("?", |c| c.name());
    match (stage, side) {
        (Stage::WaitingForPeer, _) => Some("waiting for the receiver to type the code…".into()),
        (Stage::Authenticating, Side::Sender) => Some("a device joined; checking the code…".into()),
        (Stage::Authenticating, Side::Receiver) => Some("checking the code with the sender…".into()),
        (Stage::Connecting, _) => Some("the code matched; connecting…".into()),
        (Stage::Offered, Side::Sender) => Some(format!("connected ({class}); waiting for the receiver to accept…")),
        (Stage::Offered, Side::Receiver) => Some(format!("connected ({class})")),
        (Stage::WaitingForReturn, _) => {
            Some("the receiver is gone; waiting for it to run `peers receive` with the same code again…".into())
        }
        (Stage::Moving | Stage::Done, _) => None,
    }
}

/// The line for this side's signaling connection dropping or coming back.
fn signaling_line(link: SignalingLink) -> &'static str {
    match link {
        SignalingLink::Reconnecting => "the signaling server is unreachable; registering again…",
        SignalingLink::Registered => "registered again with the signaling server",
    }
}

fn status_json(status: &Status) -> Value {
    json!({
        "event": "status",
        "stage": status.stage.name(),
        "signaling": status.signaling.name(),
        "path": status.class.map(|c| c.name()),
        "bytes_done": status.progress.bytes_done,
        "bytes_total": status.progress.bytes_total,
        "bytes_resumed": status.progress.bytes_resumed,
    })
}

fn new_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg:>14} [{bar:32}] {bytes}/{total_bytes} {percent:>3}% {binary_bytes_per_sec} ETA {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Shows `status` until the transfer ends (its sender goes away); returns the last one.
async fn show(mut status: watch::Receiver<Status>, json: bool, side: Side) -> Option<Status> {
    let tty = std::io::stderr().is_terminal();
    let mut shown: Option<Status> = None;
    let mut bar: Option<ProgressBar> = None;
    let mut last_json: Option<Instant> = None;
    loop {
        let now = *status.borrow_and_update();
        let new_stage = shown.is_none_or(|s| s.stage != now.stage);
        let new_path = shown.is_some_and(|s| s.class.is_some() && s.class != now.class);
        let new_link = shown.is_some_and(|s| s.signaling != now.signaling);
        if json {
            if new_link {
                line(json!({
                    "event": "signaling", "state": now.signaling.name(), "bytes_done": now.progress.bytes_done,
                }));
            }
            if new_path && let (Some(from), Some(to)) = (shown.and_then(|s| s.class), now.class) {
                line(json!({
                    "event": "path", "from": from.name(), "to": to.name(), "bytes_done": now.progress.bytes_done,
                }));
            }
            let due = last_json.is_none_or(|at| at.elapsed() >= JSON_INTERVAL);
            if new_stage || new_path || new_link || due {
                line(status_json(&now));
                last_json = Some(Instant::now());
            }
        } else {
            let say = |text: String| match &bar {
                Some(bar) => bar.println(text),
                None => eprintln!("{text}"),
            };
            if new_stage && let Some(text) = stage_line(now.stage, side, &now) {
                say(text);
            }
            if new_link {
                say(signaling_line(now.signaling).into());
            }
            if new_path && let (Some(from), Some(to)) = (shown.and_then(|s| s.class), now.class) {
                say(format!("path: {} → {} after {}", from.name(), to.name(), HumanBytes(now.progress.bytes_done)));
            }
            if matches!(now.stage, Stage::Moving | Stage::Done) && tty {
                let bar = bar.get_or_insert_with(|| new_bar(now.progress.bytes_total));
                bar.set_position(now.progress.bytes_done);
                bar.set_message(now.class.map_or("", |c| c.name()));
            }
        }
        shown = Some(now);
        if status.changed().await.is_err() {
            break;
        }
    }
    let last = *status.borrow();
    if json && shown != Some(last) {
        line(status_json(&last));
    }
    if let Some(bar) = bar {
        bar.set_position(last.progress.bytes_done);
        bar.finish();
    }
    Some(last)
}
