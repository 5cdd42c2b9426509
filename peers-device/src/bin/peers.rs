//! `peers`: the device daemon and its command line. Every flag can also be set
//! through the environment variable named in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use peers_device::GroupId;
use peers_device::daemon::control::{self, ControlRequest, ControlResponse};
use peers_device::daemon::{Daemon, DaemonOptions, DataDir};
use peers_device::sync::{EngineOptions, SqliteSyncEngine};

#[derive(Parser, Debug)]
#[command(name = "peers", version, about = "Keep your devices, and the groups they share, in sync.")]
struct Cli {
    /// Where this device keeps its identity, trusted devices and data.
    /// Default: $XDG_DATA_HOME/peers, or ~/.local/share/peers.
    #[arg(long, env = "PEERS_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create this device's identity.
    Init {
        /// The user this device belongs to.
        #[arg(long, env = "PEERS_USER", default_value = "me")]
        user: String,
    },
    /// Print this device's id and share code (give the code to `peers trust` elsewhere).
    Info {
        /// URLs where other devices can reach this one (repeatable).
        #[arg(long, env = "PEERS_ADVERTISE", value_delimiter = ',')]
        advertise: Vec<String>,
    },
    /// Trust a device from its share code, as a member of groups.
    Trust {
        /// The other device's share code.
        code: String,
        /// Groups it is a member of (repeatable).
        #[arg(long = "group", env = "PEERS_GROUPS", value_delimiter = ',')]
        groups: Vec<GroupId>,
    },
    /// Run the daemon: listen, connect to trusted devices, sync groups.
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
    },
    /// Show connections, their classes and latency, and per-group sync state.
    Status,
    /// Write a key in a group.
    Put {
        /// The group.
        group: GroupId,
        /// The key.
        key: String,
        /// The value.
        #[arg(required_unless_present = "file")]
        value: Option<String>,
        /// Read the value from this file (UTF-8 text) instead.
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
    },
    /// Read a key in a group.
    Get {
        /// The group.
        group: GroupId,
        /// The key.
        key: String,
    },
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
        .init();
    let cli = Cli::parse();
    let data = DataDir::new(cli.data_dir.clone().unwrap_or_else(default_data_dir));
    match run(cli.command, data).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("peers: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, data: DataDir) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Init { user } => {
            let keys = data.init(&user)?;
            println!("device {}", keys.device_id());
            println!("created in {}", data.root().display());
        }
        Command::Info { advertise } => {
            let keys = data.keys()?;
            println!("device {}", keys.device_id());
            println!("share code {}", keys.info(advertise)?.to_share_code());
        }
        Command::Trust { code, groups } => {
            let info = data.trust(&code, &groups)?;
            println!("trusted {} ({}) in {} group(s)", info.device_id, info.user_id, groups.len());
        }
        Command::Run { listen, advertise, groups, signaling } => {
            let mut options = DaemonOptions::new(data, listen, groups);
            options.advertise = advertise;
            options.signaling = signaling;
            let daemon = Daemon::start(options).await?;
            println!("device {}", daemon.manager().device_id());
            println!("share code {}", daemon.share_code());
            if let Some(url) = daemon.url() {
                println!("listening on {url}");
            }
            wait_for_signal().await;
            daemon.shutdown().await;
        }
        Command::Status => match control::request(&data.control_socket(), &ControlRequest::Status).await? {
            ControlResponse::Status { table } => print!("{table}"),
            other => return Err(format!("unexpected answer {other:?}").into()),
        },
        Command::Put { group, key, value, file } => {
            let value = match (value, file) {
                (Some(value), _) => value,
                (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?,
                (None, None) => return Err("give a value or --file".into()),
            };
            let request = ControlRequest::Put { group: group.clone(), key: key.clone(), value: value.clone() };
            match control::request(&data.control_socket(), &request).await {
                Ok(ControlResponse::Done) => {}
                Ok(other) => return Err(format!("{other:?}").into()),
                // No daemon running: write the database directly; it syncs on the next run.
                Err(peers_device::Error::Io { .. }) => {
                    open_engine(&data, group).await?.put(&key, value.as_bytes()).await?;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Command::Demo => {
            peers_device::demo::run(&mut std::io::stdout()).await?;
        }
        Command::Get { group, key } => {
            let request = ControlRequest::Get { group: group.clone(), key: key.clone() };
            let value = match control::request(&data.control_socket(), &request).await {
                Ok(ControlResponse::Value { value }) => value,
                Ok(other) => return Err(format!("{other:?}").into()),
                Err(peers_device::Error::Io { .. }) => {
                    open_engine(&data, group).await?.get(&key).await?.map(|v| String::from_utf8_lossy(&v).into_owned())
                }
                Err(err) => return Err(err.into()),
            };
            match value {
                Some(value) => println!("{value}"),
                None => return Err(format!("{key} is not set").into()),
            }
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
