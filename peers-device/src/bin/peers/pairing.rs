//! `peers pair` and `peers join`: two devices trust each other in a group by a short
//! code. Each side's long-term device (its data directory's keys, with the URLs the
//! running daemon advertises, or `--advertise`) is confirmed by the PAKE; then each
//! trusts the other exactly as `peers trust` does: in the running daemon at once, or
//! in `trusted.json` when none runs.
//!
//! `--json`: one JSON object a line on standard output, each with an `"event"`:
//! `code` (pair only), `paired` or `error`.

use std::sync::Arc;
use std::time::Duration;

use peers_device::GroupId;
use peers_device::daemon::DataDir;
use peers_device::daemon::control::{self, ControlRequest, ControlResponse};
use peers_device::transfer::{PairOptions, Paired, TransferCode, join, pair};
use peers_sdk::DeviceInfo;
use serde_json::json;

use crate::transfer::{CodeArgs, SignalingArgs, line, reported};
use crate::{CliResult, trust_code};

/// `peers pair`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct PairArgs {
    /// Groups both devices become members of (at least one; repeatable).
    #[arg(long = "group", value_delimiter = ',', required = true)]
    groups: Vec<GroupId>,
    #[command(flatten)]
    signaling: SignalingArgs,
    /// URLs where the other device can reach this one (default: those the running
    /// daemon advertises; none when no daemon runs).
    #[arg(long, env = "PEERS_ADVERTISE", value_delimiter = ',')]
    advertise: Vec<String>,
    #[command(flatten)]
    code: CodeArgs,
    /// One JSON object a line instead of text.
    #[arg(long)]
    json: bool,
}

/// `peers join`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct JoinArgs {
    /// The code `peers pair` shows on the other device.
    code: String,
    #[command(flatten)]
    signaling: SignalingArgs,
    /// URLs where the other device can reach this one (default: those the running
    /// daemon advertises; none when no daemon runs).
    #[arg(long, env = "PEERS_ADVERTISE", value_delimiter = ',')]
    advertise: Vec<String>,
    /// One JSON object a line instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `peers pair`.
pub(crate) async fn run_pair(args: PairArgs, data: DataDir, timeout: Duration) -> CliResult<()> {
    let json = args.json;
    reported(pair_inner(args, &data, timeout).await, json)
}

/// Runs `peers join`.
pub(crate) async fn run_join(args: JoinArgs, data: DataDir, timeout: Duration) -> CliResult<()> {
    let json = args.json;
    reported(join_inner(args, &data, timeout).await, json)
}

async fn pair_inner(args: PairArgs, data: &DataDir, timeout: Duration) -> CliResult<()> {
    let (keys, own) = own_device(data, args.advertise, timeout).await?;
    let mut options = PairOptions::new(args.signaling.link());
    options.words = args.code.words();
    options.code_ttl = args.code.ttl();
    let (code, handle) = pair(keys, own, args.groups, options).await?;
    args.code.show(&code, None, args.json, "join");
    let paired = handle.finished().await?;
    trust_paired(data, paired, timeout, args.json).await
}

async fn join_inner(args: JoinArgs, data: &DataDir, timeout: Duration) -> CliResult<()> {
    let code: TransferCode = args.code.parse()?;
    let (keys, own) = own_device(data, args.advertise, timeout).await?;
    let paired = join(code, keys, own, args.signaling.link()).await?;
    trust_paired(data, paired, timeout, args.json).await
}

/// This device's keys and the device info to give the other side: `advertise` when
/// given, else the running daemon's share code, else no URLs.
async fn own_device(
    data: &DataDir,
    advertise: Vec<String>,
    timeout: Duration,
) -> CliResult<(Arc<peers_sdk::DeviceKeys>, DeviceInfo)> {
    let keys = Arc::new(data.keys()?);
    if !advertise.is_empty() {
        let info = keys.info(advertise)?;
        return Ok((keys, info));
    }
    let info = match control::request(&data.control_socket(), &ControlRequest::Info, timeout).await {
        Ok(ControlResponse::Info { share_code }) => DeviceInfo::from_share_code(&share_code)?,
        Ok(other) => return Err(format!("unexpected answer from the daemon: {other:?}").into()),
        Err(peers_device::Error::DaemonNotListening { .. }) => keys.info(vec![])?,
        Err(err) => return Err(err.into()),
    };
    Ok((keys, info))
}

async fn trust_paired(data: &DataDir, paired: Paired, timeout: Duration, json: bool) -> CliResult<()> {
    let code = paired.device.to_share_code();
    let (device, user, groups) = trust_code(data, &code, &paired.groups, timeout).await?;
    let names: Vec<&str> = groups.iter().map(GroupId::as_str).collect();
    match json {
        true => line(json!({ "event": "paired", "device": device, "user": user, "groups": names })),
        false => println!("paired: trusting {device} ({user}) in {}", names.join(", ")),
    }
    Ok(())
}
