//! The raw data channel row of the send-by-code benchmark (`benches/transfer/run.sh`):
//! one file over one webrtc-rs data channel on loopback, between two processes, into
//! a file. What `peers send` / `peers receive` over WebRTC is compared with.
//!
//! `webrtc_raw_file SRC DST`: this process is the receiver; it starts itself again
//! as the sender (`webrtc_raw_file --send SRC`, talking over its standard input and
//! output), answers the sender's offer, reads the channel into `DST` and syncs it,
//! then prints the rate. Both processes run on `#[tokio::main]`, as `peers` does.
//!
//! Mirrors what our `WebRtcSocket` does, without anything of ours above it: the same
//! peer connection settings (`library_peer_connection` with `WebRtcConfig::loopback()`:
//! our UDP socket with 4 MiB buffers, detached channels), one ordered channel,
//! binary messages of `max_frame_size` or the peer's smaller
//! `a=max-message-size` (64 KiB between two webrtc-rs peers, which name none), the sender held at the socket's buffered-amount marks (wait
//! above `send_buffer_high`, 4 MiB; woken below half of it), the receiver reading
//! `max_receive_message` at a time. Signaling is one offer and one answer with every
//! candidate in them (gathering finished first). Not a test;
//! `cargo bench -p peers-transport-webrtc --features test-utils --bench webrtc_raw_file --no-run`
//! builds it.
//!
//! `webrtc_raw_file SRC DST --sender COMMAND...` starts `COMMAND... --send SRC` as the
//! sender instead, for another library's sender speaking the same protocol on its
//! standard input and output: its first line the offer and the size (`Offer`), then it
//! reads the answer line, sends the file in one ordered channel, and reads one more
//! line (the receiver has every byte, synced) before it closes. peers-js's
//! `bench/raw-datachannel-send.ts` is node-datachannel's (`--sender node
//! peers-js/dist/bench/raw-datachannel-send.js`: the `webrtc-raw-ndc` row).
//!
//! The receiver prints the rate over its whole run (the sender's start, signaling and
//! the transfer), and over the time from the channel's open to the synced file (the
//! transfer alone, without the sender process's start-up).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peers_transport_webrtc::{WebRtcConfig, library_peer_connection};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use webrtc::data::data_channel::DataChannel;
use webrtc::data_channel::RTCDataChannel;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;

type Failure = Box<dyn std::error::Error + Send + Sync>;
type Outcome<T> = std::result::Result<T, Failure>;

/// The sender's first line: its offer and the file's size.
#[derive(Serialize, Deserialize)]
struct Offer {
    sdp: RTCSessionDescription,
    size: u64,
}

#[tokio::main]
async fn main() -> Outcome<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.as_slice() {
        [flag, src] if flag == "--send" => send(src).await,
        [src, dst] => receive(src, dst, None).await,
        [src, dst, flag, sender @ ..] if flag == "--sender" && !sender.is_empty() => {
            receive(src, dst, Some(sender)).await
        }
        _ => Err("usage: webrtc_raw_file SRC DST [--sender COMMAND...]".into()),
    }
}

/// Sets the local description and waits until every candidate is in it.
async fn local_description(pc: &RTCPeerConnection, sdp: RTCSessionDescription) -> Outcome<RTCSessionDescription> {
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(sdp).await?;
    let _ = gathered.recv().await;
    pc.local_description().await.ok_or_else(|| "no local description".into())
}

/// Resolves with the channel once it is open, detached.
fn detach_on_open(dc: &Arc<RTCDataChannel>, tx: mpsc::Sender<Arc<DataChannel>>) {
    let weak = Arc::downgrade(dc);
    dc.on_open(Box::new(move || {
        Box::pin(async move {
            if let Some(dc) = weak.upgrade()
                && let Ok(detached) = dc.detach().await
            {
                let _ = tx.send(detached).await;
            }
        })
    }));
}

/// The largest message, as the socket picks it: our frame size, or the peer's
/// `a=max-message-size` if smaller (64 KiB when it names none, RFC 8841; 0: no limit).
fn message_size(config: &WebRtcConfig, remote_sdp: &str) -> usize {
    let peer = remote_sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=max-message-size:")?.parse::<usize>().ok());
    match peer {
        Some(0) => config.max_frame_size,
        Some(peer) => peer.min(config.max_frame_size),
        None => config.max_frame_size.min(64 * 1024),
    }
}

async fn send(src: &str) -> Outcome<()> {
    let config = WebRtcConfig::loopback();
    let mut file = std::fs::File::open(src)?;
    let size = file.metadata()?.len();
    let pc = library_peer_connection(&config).await?;
    let (open_tx, mut open_rx) = mpsc::channel(1);
    let dc = pc.create_data_channel("raw", None).await?;
    detach_on_open(&dc, open_tx);
    let offer = pc.create_offer(None).await?;
    let sdp = local_description(&pc, offer).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&Offer { sdp, size })?)?;
    out.flush()?;
    let mut input = BufReader::new(std::io::stdin());
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer: RTCSessionDescription = serde_json::from_str(&line)?;
    let message = message_size(&config, &answer.sdp);
    pc.set_remote_description(answer).await?;
    let channel = open_rx.recv().await.ok_or("the channel never opened")?;
    // The socket's marks: wait above the high-water mark, woken below half of it.
    let high = config.send_buffer_high;
    let drained = Arc::new(Notify::new());
    channel.set_buffered_amount_low_threshold(high / 2);
    let notify = drained.clone();
    channel.on_buffered_amount_low(Box::new(move || {
        notify.notify_waiters();
        Box::pin(async {})
    }));
    let mut sent = 0u64;
    while sent < size {
        loop {
            let woken = drained.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if channel.buffered_amount() <= high {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), woken).await;
        }
        let mut piece = vec![0u8; message.min((size - sent) as usize)];
        file.read_exact(&mut piece)?;
        channel.write(&Bytes::from(piece)).await?;
        sent += message.min((size - sent) as usize) as u64;
    }
    // The receiver says when it has everything; until then SCTP drains the buffer,
    // so the wait is off the runtime's threads.
    tokio::task::spawn_blocking(move || input.read_line(&mut String::new())).await??;
    pc.close().await?;
    Ok(())
}

/// Runs `work` to its end, unless the sender exits first: a sender that fails would
/// leave the channel (or its opening) waiting until ICE gives up, if it does.
async fn unless_exited<T>(child: &mut Child, work: impl Future<Output = Outcome<T>>) -> Outcome<T> {
    tokio::pin!(work);
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = watch.tick() => {
                if let Some(status) = child.try_wait()? {
                    return Err(format!("the sender exited ({status}) before the end").into());
                }
            }
        }
    }
}

/// Reads `size` bytes from the channel into a new file `dst`, `message` at most at a
/// time, and syncs it.
async fn read_file(channel: &DataChannel, dst: &str, size: u64, message: usize) -> Outcome<u64> {
    let mut file = std::fs::File::create(dst)?;
    let mut buf = vec![0u8; message];
    let mut got = 0u64;
    while got < size {
        let n = channel.read(&mut buf).await?;
        if n == 0 {
            return Err(format!("the channel ended after {got} of {size} bytes").into());
        }
        file.write_all(&buf[..n])?;
        got += n as u64;
    }
    file.sync_all()?;
    Ok(got)
}

/// Starts the sender of `src`: `sender --send SRC`, or this program again.
fn start_sender(
    src: &str,
    sender: Option<&[String]>,
) -> Outcome<(Child, ChildStdin, BufReader<std::process::ChildStdout>)> {
    let mut command = match sender {
        Some([program, args @ ..]) => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
        _ => Command::new(std::env::current_exe()?),
    };
    let mut child = command.args(["--send", src]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    Ok((child, stdin, stdout))
}

async fn receive(src: &str, dst: &str, sender: Option<&[String]>) -> Outcome<()> {
    let started = Instant::now();
    let config = WebRtcConfig::loopback();
    let (mut child, mut to_sender, mut from_sender) = start_sender(src, sender)?;
    let mut line = String::new();
    from_sender.read_line(&mut line)?;
    let offer: Offer = serde_json::from_str(&line)?;
    let pc = library_peer_connection(&config).await?;
    let (open_tx, mut open_rx) = mpsc::channel(1);
    pc.on_data_channel(Box::new(move |dc| {
        detach_on_open(&dc, open_tx.clone());
        Box::pin(async {})
    }));
    pc.set_remote_description(offer.sdp).await?;
    let answer = pc.create_answer(None).await?;
    let sdp = local_description(&pc, answer).await?;
    writeln!(to_sender, "{}", serde_json::to_string(&sdp)?)?;
    to_sender.flush()?;
    // The channel's open, then every byte: until then, the sender's exit ends the run.
    let receiving = async {
        let channel = open_rx.recv().await.ok_or("the channel never opened")?;
        let opened = Instant::now();
        let got = read_file(&channel, dst, offer.size, config.max_receive_message).await?;
        Outcome::Ok((got, opened))
    };
    let (got, opened) = unless_exited(&mut child, receiving).await?;
    let secs = started.elapsed().as_secs_f64();
    let open_secs = opened.elapsed().as_secs_f64();
    writeln!(to_sender, "done")?;
    to_sender.flush()?;
    let status = child.wait()?;
    pc.close().await?;
    if !status.success() {
        return Err(format!("the sender exited with {status}").into());
    }
    let rate = |secs: f64| got as f64 / secs / 1e6;
    eprintln!(
        "{got} bytes in {secs:.2} s: {:.1} MB/s; from the channel's open {open_secs:.2} s: {:.1} MB/s",
        rate(secs),
        rate(open_secs)
    );
    Ok(())
}
