//! `peers`: the device daemon and its command line. Every flag can also be set
//! through the environment variable named in `--help`.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use peers_device::GroupId;
use peers_device::daemon::control::{self, ControlRequest, ControlResponse};
use peers_device::daemon::{Daemon, DaemonOptions, DataDir, DataDirLock};
use peers_device::sync::{EngineOptions, MAX_VALUE_LEN, SqliteSyncEngine};

mod pairing;
mod transfer;

// The help texts below say "32 MiB".
const _: () = assert!(MAX_VALUE_LEN == 32 << 20, "update the --help texts of put");

#[derive(Parser, Debug)]
#[command(name = "peers", version, about = "Keep your devices, and the groups they share, in sync.")]
struct Cli {
    /// Where this device keeps its identity, trusted devices and data.
    /// Default: $XDG_DATA_HOME/peers, or ~/.local/share/peers.
    #[arg(long, env = "PEERS_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Seconds to wait for the running daemon's answer.
    #[arg(long, env = "PEERS_CONTROL_TIMEOUT", global = true, default_value_t = 30)]
    control_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create this device's identity.
    Init {
        /// The user this device belongs to (devices of one user share it).
        /// Default: the OS user name ($USER, $LOGNAME or $USERNAME, else this
        /// process's user in /etc/passwd).
        #[arg(long, env = "PEERS_USER")]
        user: Option<String>,
    },
    /// Print this device's id and share code (give the code to `peers trust` elsewhere).
    Info {
        /// URLs where other devices can reach this one (repeatable).
        #[arg(long, env = "PEERS_ADVERTISE", value_delimiter = ',')]
        advertise: Vec<String>,
    },
    /// Trust a device from its share code, as a member of groups. A running
    /// daemon connects to it at once.
    Trust {
        /// The other device's share code.
        code: String,
        /// Groups it is a member of (at least one; repeatable).
        #[arg(long = "group", env = "PEERS_GROUPS", value_delimiter = ',', required = true)]
        groups: Vec<GroupId>,
    },
    /// Stop trusting a device: a running daemon drops it from every group and
    /// disconnects it at once.
    Untrust {
        /// Its device id (or a unique prefix of at least 4 characters, as
        /// `peers status` shows), or its share code.
        device: String,
    },
    /// Run the daemon: listen, connect to trusted devices, sync groups. It
    /// holds the data directory's lock while it runs: other `peers` commands
    /// go through its control socket.
    Run {
        /// Address to accept socket.io connections on (for example 0.0.0.0:7700).
        #[arg(long, env = "PEERS_LISTEN")]
        listen: Option<SocketAddr>,
        /// URLs to advertise instead of the listening URL (repeatable).
        #[arg(long, env = "PEERS_ADVERTISE", value_delimiter = ',')]
        advertise: Vec<String>,
        /// Groups to sync (repeatable).
        #[arg(long = "group", env = "PEERS_GROUPS", value_delimiter = ',', required = true)]
        groups: Vec<GroupId>,
        /// A signaling server (http://host:port/): reach members over WebRTC and
        /// its relay too. Repeat it (or separate with commas) for instances of
        /// one deployment to fail over between, in order of preference.
        #[arg(long, env = "PEERS_SIGNALING_URL", value_delimiter = ',')]
        signaling: Vec<String>,
        /// Where files from trusted devices (`peers send --to`) are stored (created
        /// when needed; nothing there is replaced). Default: inbox in the data
        /// directory.
        #[arg(long, value_name = "DIR")]
        inbox: Option<PathBuf>,
    },
    /// Show connections, their classes and latency, and per-group sync state.
    Status,
    /// Write a key in a group. Values are any bytes, up to 32 MiB; keys are
    /// 1 to 1,024 bytes of UTF-8.
    Put {
        /// The group.
        group: GroupId,
        /// The key.
        key: String,
        /// The value, as text.
        #[arg(required_unless_present = "file")]
        value: Option<String>,
        /// Read the value from this file instead (any bytes, up to 32 MiB; `-`
        /// reads standard input).
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
    },
    /// Read a key in a group: its bytes, exactly as written, on standard output
    /// (followed by a newline only when that is a terminal).
    Get {
        /// The group.
        group: GroupId,
        /// The key.
        key: String,
    },
    /// Send files and directories to someone: prints a short code (such as
    /// 7-maple-orbit) and waits until the other side has received everything.
    /// Needs no daemon. With --to DEVICE instead: through the running daemon to a
    /// device it trusts, no code; that device's daemon stores them in its inbox.
    ///
    /// Gives up when nobody used the code within --minutes, when the receiver
    /// has not answered the offer within 10 minutes, and, once bytes move, when
    /// nothing moved for 60 s (a receiver whose process died is seen at once on
    /// the relay, within about 10 s on WebRTC). A receiver that died may run the
    /// same `peers receive CODE` again within --rejoin-wait (300 s) and resume.
    /// Ctrl-C cancels and tells the receiver (with --to, the daemon cancels the
    /// transfer and the receiving daemon discards what it received of it).
    Send(transfer::SendArgs),
    /// Receive what someone sends with `peers send`, by its code. Shows the names
    /// and the total size and asks first (unless --yes). Needs no daemon.
    ///
    /// Gives up when nothing moved for 60 s. Ctrl-C cancels and tells the
    /// sender; what was verified stays hidden in the --out directory (never
    /// shown as a finished file), and the same files sent again into it resume
    /// from there.
    Receive(transfer::ReceiveArgs),
    /// Pair this device with another: prints a short code and waits for
    /// `peers join CODE` there; then each trusts the other in the groups (a
    /// running daemon at once).
    Pair(pairing::PairArgs),
    /// Pair with the device that shows a code from `peers pair`.
    Join(pairing::JoinArgs),
    /// Run a signaling server and three devices in two groups in this process,
    /// and watch them connect and sync.
    Demo,
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share")));
    base.unwrap_or_else(|| PathBuf::from(".")).join("peers")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Our crates' warnings by default; the WebRTC stack's own are chatty.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,peers_device=warn,peers_sdk=warn,peers_signaling=warn,peers_transport_socketio=warn,peers_transport_webrtc=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: log files get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let data = DataDir::new(cli.data_dir.clone().unwrap_or_else(default_data_dir));
    let timeout = Duration::from_secs(cli.control_timeout.max(1));
    match run(cli.command, data, timeout).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("peers: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How long a command waits for another one holding the data directory (a
/// daemon that is starting holds it longer: then this command fails).
const LOCK_WAIT: Duration = Duration::from_secs(3);

type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Who answers a request: the running daemon, or (when none runs) this
/// process, holding the data directory's lock while it works.
enum Route {
    Daemon(ControlResponse),
    Direct(DataDirLock),
}

/// Sends `request` to the running daemon. Only when no process listens on the
/// control socket and none holds the data directory's lock may the caller
/// work on the data directory itself; a daemon that holds the lock but does
/// not answer (starting, stuck, its socket removed) is an error.
async fn route(data: &DataDir, request: &ControlRequest, timeout: Duration) -> CliResult<Route> {
    match control::request(&data.control_socket(), request, timeout).await {
        Ok(ControlResponse::Error { message }) => Err(format!("the daemon refused: {message}").into()),
        Ok(response) => Ok(Route::Daemon(response)),
        Err(peers_device::Error::DaemonNotListening { socket, source }) => match data.lock(LOCK_WAIT).await {
            Ok(lock) => Ok(Route::Direct(lock)),
            Err(peers_device::Error::DataDirInUse { path }) => Err(format!(
                "{path} is held by a daemon whose control socket {socket} does not answer ({source}): it is \
                 starting, stuck, or its socket was removed. Nothing was done; try again when `peers status` answers."
            )
            .into()),
            Err(err) => Err(err.into()),
        },
        Err(err) => Err(format!("{err}. This command did not touch the data directory.").into()),
    }
}

/// Trusts the device of share `code` in `groups`: in the running daemon (which
/// connects to it at once), or in the data directory when none runs. Returns its id,
/// user and the groups it is now a member of.
pub(crate) async fn trust_code(
    data: &DataDir,
    code: &str,
    groups: &[GroupId],
    timeout: Duration,
) -> CliResult<(String, String, Vec<GroupId>)> {
    let request = ControlRequest::Trust { share_code: code.to_owned(), groups: groups.to_vec() };
    match route(data, &request, timeout).await? {
        Route::Daemon(ControlResponse::Trusted { device, user, groups }) => Ok((device, user, groups)),
        Route::Daemon(other) => Err(unexpected(other)),
        Route::Direct(_lock) => {
            let info = data.trust(code, groups)?;
            Ok((info.device_id.to_string(), info.user_id, groups.to_vec()))
        }
    }
}

fn unexpected(response: ControlResponse) -> Box<dyn std::error::Error> {
    format!("unexpected answer from the daemon: {response:?}").into()
}

/// The OS user name: from the environment, else (a service or container
/// without those variables) this process's user in `/etc/passwd`.
fn os_user() -> Option<String> {
    let from_env = ["USER", "LOGNAME", "USERNAME"]
        .into_iter()
        .filter_map(std::env::var_os)
        .map(|name| name.to_string_lossy().trim().to_owned())
        .find(|name| !name.is_empty());
    from_env.or_else(passwd_user)
}

#[cfg(unix)]
fn passwd_user() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().map(|line| line.split(':').collect::<Vec<_>>()).find_map(|fields| match fields.as_slice() {
        [name, _, id, ..] if *id == uid && !name.is_empty() => Some((*name).to_owned()),
        _ => None,
    })
}

#[cfg(not(unix))]
fn passwd_user() -> Option<String> {
    None
}

/// The value of `put`: its text, or the bytes of `file` (`-`: standard input),
/// refused beyond the limit without reading further.
fn read_value(value: Option<String>, file: Option<PathBuf>) -> CliResult<Vec<u8>> {
    let too_big = |len: usize| format!("a value of {len} bytes or more (the limit is {MAX_VALUE_LEN} bytes, 32 MiB)");
    let bytes = match (value, file) {
        (Some(value), _) => value.into_bytes(),
        (None, Some(path)) => {
            let mut bytes = Vec::new();
            let limit = MAX_VALUE_LEN as u64 + 1;
            let read = match path.as_os_str() == "-" {
                true => std::io::stdin().lock().take(limit).read_to_end(&mut bytes),
                false => std::fs::File::open(&path).and_then(|f| f.take(limit).read_to_end(&mut bytes)),
            };
            read.map_err(|e| format!("{}: {e}", path.display()))?;
            bytes
        }
        (None, None) => return Err("give a value or --file".into()),
    };
    if bytes.len() > MAX_VALUE_LEN {
        return Err(too_big(bytes.len()).into());
    }
    Ok(bytes)
}

async fn run(command: Command, data: DataDir, timeout: Duration) -> CliResult<()> {
    match command {
        Command::Init { user } => {
            let user = user
                .or_else(os_user)
                .ok_or("no OS user name ($USER, $LOGNAME, $USERNAME, /etc/passwd): give --user")?;
            let keys = data.init(&user)?;
            println!("device {}", keys.device_id());
            println!("user {user}");
            println!("created in {}", data.root().display());
        }
        Command::Info { advertise } => {
            let keys = data.keys()?;
            println!("device {}", keys.device_id());
            println!("share code {}", keys.info(advertise)?.to_share_code());
        }
        Command::Trust { code, groups } => {
            let (device, user, groups) = trust_code(&data, &code, &groups, timeout).await?;
            let groups: Vec<&str> = groups.iter().map(GroupId::as_str).collect();
            println!("trusted {device} ({user}) in {}", groups.join(", "));
        }
        Command::Untrust { device } => {
            let request = ControlRequest::Untrust { device: device.clone() };
            let device = match route(&data, &request, timeout).await? {
                Route::Daemon(ControlResponse::Untrusted { device }) => device,
                Route::Daemon(other) => return Err(unexpected(other)),
                Route::Direct(_lock) => data.untrust(&device)?.device_id.to_string(),
            };
            println!("no longer trusting {device}");
        }
        Command::Run { listen, advertise, groups, signaling, inbox } => {
            let mut options = DaemonOptions::new(data, listen, groups);
            options.advertise = advertise;
            options.signaling = signaling;
            options.inbox = inbox;
            let daemon = Daemon::start(options).await?;
            println!("device {}", daemon.manager().device_id());
            println!("share code {}", daemon.share_code());
            if let Some(url) = daemon.url() {
                println!("listening on {url}");
            }
            wait_for_signal().await;
            daemon.shutdown().await;
        }
        Command::Status => match route(&data, &ControlRequest::Status, timeout).await? {
            Route::Daemon(ControlResponse::Status { table }) => print!("{table}"),
            Route::Daemon(other) => return Err(unexpected(other)),
            Route::Direct(_lock) => return Err(format!("no daemon is running on {}", data.root().display()).into()),
        },
        Command::Put { group, key, value, file } => {
            let value = read_value(value, file)?;
            let request = ControlRequest::Put { group: group.clone(), key: key.clone(), value: value.clone() };
            match route(&data, &request, timeout).await? {
                Route::Daemon(ControlResponse::Done) => {}
                Route::Daemon(other) => return Err(unexpected(other)),
                // No daemon: write the database (it syncs on the next run).
                Route::Direct(_lock) => {
                    open_engine(&data, group).await?.put(&key, &value).await?;
                }
            }
        }
        Command::Pair(args) => pairing::run_pair(args, data, timeout).await?,
        Command::Join(args) => pairing::run_join(args, data, timeout).await?,
        Command::Send(args) => transfer::run_send(args, &data, timeout).await?,
        Command::Receive(args) => transfer::run_receive(args).await?,
        Command::Demo => {
            peers_device::demo::run(&mut std::io::stdout()).await?;
        }
        Command::Get { group, key } => {
            let request = ControlRequest::Get { group: group.clone(), key: key.clone() };
            let value = match route(&data, &request, timeout).await? {
                Route::Daemon(ControlResponse::Value { value }) => value,
                Route::Daemon(other) => return Err(unexpected(other)),
                Route::Direct(_lock) => open_engine(&data, group).await?.get(&key).await?,
            };
            let Some(value) = value else { return Err(format!("{key} is not set").into()) };
            let mut out = std::io::stdout().lock();
            out.write_all(&value)?;
            if out.is_terminal() && !value.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

async fn open_engine(data: &DataDir, group: GroupId) -> peers_device::Result<SqliteSyncEngine> {
    let me = data.keys()?.device_id();
    std::fs::create_dir_all(data.root().join("groups"))
        .map_err(|source| peers_device::Error::Io { what: "create the groups directory", source })?;
    SqliteSyncEngine::open(data.group_db(&group), group, me, EngineOptions::default()).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Clap's own checks (unique names, valid defaults) for every command, at test time
    /// rather than at a user's first run.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
