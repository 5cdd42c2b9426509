//! `peers-signaling`: runs a [`SignalingServer`] until interrupted.
//!
//! Every setting is a flag, an environment variable (`PEERS_SIGNALING_…`) or a
//! key of the TOML file given with `--config`; flags and variables win over
//! the file, the file over the defaults. With no settings at all it listens on
//! 127.0.0.1:7000 and keeps its queue in SQLite under `./peers-signaling-data`.
//! With `--redis-url` several instances share one Redis instead (a Redis
//! Cluster with `--redis-cluster true`).
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`). Once listening
//! it prints `listening on http://ADDR` on stdout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use peers_signaling::store::StoreConfig;
use peers_signaling::{ServerConfig, SignalingServer};
use serde::Deserialize;

/// The peers signaling server.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(version, about)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// A TOML file with any of these settings (keys in snake_case).
    #[arg(long, env = "PEERS_SIGNALING_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7000].
    #[arg(long, env = "PEERS_SIGNALING_BIND")]
    bind: Option<SocketAddr>,
    /// Directory of the SQLite store [default: ./peers-signaling-data].
    #[arg(long, env = "PEERS_SIGNALING_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the queue in memory only (lost on restart).
    #[arg(long, env = "PEERS_SIGNALING_MEMORY")]
    memory: Option<bool>,
    /// Share the queue, notices, presence and rate limits with other instances
    /// through this Redis (`redis://host:port[/db]`); replaces the SQLite store.
    #[arg(long, env = "PEERS_SIGNALING_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// `redis_url` names seed nodes of a Redis Cluster (7 or newer): one URL, or
    /// up to 16 separated by commas; the other nodes are found from whichever
    /// answers [default: false].
    #[arg(long, env = "PEERS_SIGNALING_REDIS_CLUSTER")]
    redis_cluster: Option<bool>,
    /// Prefix of the Redis keys and channels [default: peers-signaling].
    #[arg(long, env = "PEERS_SIGNALING_REDIS_KEY_PREFIX")]
    redis_key_prefix: Option<String>,
    /// How long a crashed instance's devices stay online in Redis, in ms [default: 10000].
    #[arg(long, env = "PEERS_SIGNALING_REDIS_PRESENCE_TTL_MS")]
    redis_presence_ttl_ms: Option<u64>,
    /// socket.io namespace [default: /signaling].
    #[arg(long, env = "PEERS_SIGNALING_NAMESPACE")]
    namespace: Option<String>,
    /// Time to live of queued messages whose sender names none, in ms [default: 60000].
    #[arg(long, env = "PEERS_SIGNALING_DEFAULT_TTL_MS")]
    default_ttl_ms: Option<u64>,
    /// Longest time to live a sender may ask for, in ms [default: 3600000; at most a day].
    #[arg(long, env = "PEERS_SIGNALING_MAX_TTL_MS")]
    max_ttl_ms: Option<u64>,
    /// Most messages queued per device [default: 256].
    #[arg(long, env = "PEERS_SIGNALING_QUEUE_PER_DEVICE")]
    queue_per_device: Option<usize>,
    /// Most bytes queued per device [default: 1 MiB].
    #[arg(long, env = "PEERS_SIGNALING_QUEUE_PER_DEVICE_BYTES")]
    queue_per_device_bytes: Option<usize>,
    /// Most messages one sending device may have queued [default: 1024].
    #[arg(long, env = "PEERS_SIGNALING_QUEUE_PER_SENDER")]
    queue_per_sender: Option<usize>,
    /// Most bytes one sending device may have queued [default: 8 MiB].
    #[arg(long, env = "PEERS_SIGNALING_QUEUE_PER_SENDER_BYTES")]
    queue_per_sender_bytes: Option<usize>,
    /// Most messages the senders of one address (IPv6: one /64) may have queued [default: 4096].
    #[arg(long, env = "PEERS_SIGNALING_QUEUE_PER_ADDRESS")]
    queue_per_address: Option<usize>,
    /// Most bytes the senders of one address (IPv6: one /64) may have queued [default: 32 MiB].
    #[arg(long, env = "PEERS_SIGNALING_QUEUE_PER_ADDRESS_BYTES")]
    queue_per_address_bytes: Option<usize>,
    /// Most messages queued overall [default: 100000].
    #[arg(long, env = "PEERS_SIGNALING_QUEUE_TOTAL")]
    queue_total: Option<usize>,
    /// Most bytes queued overall [default: 256 MiB].
    #[arg(long, env = "PEERS_SIGNALING_QUEUE_TOTAL_BYTES")]
    queue_total_bytes: Option<usize>,
    /// Most connections at once [default: 10000].
    #[arg(long, env = "PEERS_SIGNALING_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most TCP connections at once from one address (IPv6: one /64) [default: 128].
    #[arg(long, env = "PEERS_SIGNALING_MAX_CONNECTIONS_PER_ADDRESS")]
    max_connections_per_address: Option<usize>,
    /// An origin (`scheme://host[:port]`) clients dial this server by; a
    /// registration must sign one (repeat, or comma-separate) [default: the
    /// Host header of each client's request].
    #[arg(long = "public-origin", env = "PEERS_SIGNALING_PUBLIC_ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    public_origins: Vec<String>,
    /// Seconds a client has to register after connecting [default: 10].
    #[arg(long, env = "PEERS_SIGNALING_REGISTRATION_TIMEOUT_SECS")]
    registration_timeout_secs: Option<u64>,
    /// Requests per second per device [default: 50].
    #[arg(long, env = "PEERS_SIGNALING_DEVICE_RATE")]
    device_rate: Option<u32>,
    /// Request burst per device [default: 200].
    #[arg(long, env = "PEERS_SIGNALING_DEVICE_BURST")]
    device_burst: Option<u32>,
    /// Requests per second per IP address [default: 200].
    #[arg(long, env = "PEERS_SIGNALING_IP_RATE")]
    ip_rate: Option<u32>,
    /// Request burst per IP address [default: 1000].
    #[arg(long, env = "PEERS_SIGNALING_IP_BURST")]
    ip_burst: Option<u32>,
    /// STUN URL to hand out (repeat the flag, or comma-separate in the variable).
    #[arg(long = "stun-url", env = "PEERS_SIGNALING_STUN_URLS", value_delimiter = ',')]
    #[serde(default)]
    stun_urls: Vec<String>,
    /// TURN URL to hand out with credentials (repeat, or comma-separate).
    #[arg(long = "turn-url", env = "PEERS_SIGNALING_TURN_URLS", value_delimiter = ',')]
    #[serde(default)]
    turn_urls: Vec<String>,
    /// Secret shared with the TURN server (coturn `static-auth-secret`).
    #[arg(long, env = "PEERS_SIGNALING_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,
    /// Lifetime of TURN credentials in seconds [default: 600].
    #[arg(long, env = "PEERS_SIGNALING_TURN_TTL_SECS")]
    turn_ttl_secs: Option<u64>,
    /// Lifetime of a session without a time to live of its own, in seconds [default: 600].
    #[arg(long, env = "PEERS_SIGNALING_SESSION_TTL_SECS")]
    session_ttl_secs: Option<u64>,
    /// Wrong codes a session tolerates before it is locked [default: 3].
    #[arg(long, env = "PEERS_SIGNALING_SESSION_MAX_FAILED_JOINS")]
    session_max_failed_joins: Option<u32>,
    /// Session join attempts per minute per IP address [default: 10].
    #[arg(long, env = "PEERS_SIGNALING_SESSION_JOINS_PER_MINUTE")]
    session_joins_per_minute: Option<u32>,
    /// Most live sessions at once (closed and expired ones do not count) [default: 5000].
    #[arg(long, env = "PEERS_SIGNALING_MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// Most live sessions the devices of one address (IPv6: one /64) may have created [default: 64].
    #[arg(long, env = "PEERS_SIGNALING_SESSION_PER_ADDRESS")]
    session_per_address: Option<usize>,
    /// Sessions one device may create per minute [default: 10].
    #[arg(long, env = "PEERS_SIGNALING_SESSION_CREATES_PER_MINUTE_PER_DEVICE")]
    session_creates_per_minute_per_device: Option<u32>,
    /// Sessions the devices of one address (IPv6: one /64) may create per minute [default: 30].
    #[arg(long, env = "PEERS_SIGNALING_SESSION_CREATES_PER_MINUTE_PER_IP")]
    session_creates_per_minute_per_ip: Option<u32>,
    /// Most devices one connection may watch [default: 1024].
    #[arg(long, env = "PEERS_SIGNALING_MAX_SUBSCRIPTIONS")]
    max_subscriptions: Option<usize>,
    /// Most devices the connections of one address (IPv6: one /64) may watch [default: 8192].
    #[arg(long, env = "PEERS_SIGNALING_MAX_SUBSCRIPTIONS_PER_ADDRESS")]
    max_subscriptions_per_address: Option<usize>,
    /// Most frame relays open at once that one device is a party of [default: 8].
    #[arg(long, env = "PEERS_SIGNALING_RELAY_PER_DEVICE")]
    relay_per_device: Option<usize>,
    /// Most frame relays open at once that the devices of one address (IPv6: one /64) are parties of [default: 32].
    #[arg(long, env = "PEERS_SIGNALING_RELAY_PER_ADDRESS")]
    relay_per_address: Option<usize>,
    /// Most frame relays open at once [default: 256].
    #[arg(long, env = "PEERS_SIGNALING_MAX_RELAYS")]
    max_relays: Option<usize>,
    /// Most bytes one relay carries [default: 256 MiB].
    #[arg(long, env = "PEERS_SIGNALING_RELAY_MAX_BYTES")]
    relay_max_bytes: Option<u64>,
    /// Longest life of one relay, in seconds [default: 600].
    #[arg(long, env = "PEERS_SIGNALING_RELAY_MAX_SECS")]
    relay_max_secs: Option<u64>,
    /// Origin of a web page that may connect with socket.io-client's default
    /// transports (CORS; repeat, or comma-separate; `*` for any) [default: none].
    #[arg(long = "cors-origin", env = "PEERS_SIGNALING_CORS_ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    cors_origins: Vec<String>,
    /// Serve /metrics on this address only, not on --bind [default: on the --bind address].
    #[arg(long, env = "PEERS_SIGNALING_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// /metrics answers only `Authorization: Bearer <token>` (16 to 256 visible ASCII characters) [default: none, open].
    #[arg(long, env = "PEERS_SIGNALING_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Serve the receive page from this directory (peers-js's bundle: `node peers-js/scripts/bundle-page.mjs DIR`)
    /// at /receive/, and name it to `peers send` [default: none, no page].
    #[arg(long, env = "PEERS_SIGNALING_RECEIVE_PAGE")]
    receive_page: Option<std::path::PathBuf>,
    /// Most bytes queued for one connection and not yet written [default: 524288].
    #[arg(long, env = "PEERS_SIGNALING_MAX_OUTGOING_BYTES")]
    max_outgoing_bytes: Option<usize>,
    /// A client that takes no bytes for this long is disconnected, in ms [default: 5000].
    #[arg(long, env = "PEERS_SIGNALING_WRITE_STALL_TIMEOUT_MS")]
    write_stall_timeout_ms: Option<u64>,
}

impl Settings {
    /// Fills what the command line left unset from `file`.
    fn or(self, file: Settings) -> Settings {
        macro_rules! pick {
            ($($field:ident),*) => { Settings { config: self.config, $($field: self.$field.or(file.$field),)*
                stun_urls: if self.stun_urls.is_empty() { file.stun_urls } else { self.stun_urls },
                turn_urls: if self.turn_urls.is_empty() { file.turn_urls } else { self.turn_urls },
                public_origins: if self.public_origins.is_empty() { file.public_origins } else { self.public_origins },
                cors_origins: if self.cors_origins.is_empty() { file.cors_origins } else { self.cors_origins },
            } };
        }
        pick!(
            bind,
            data_dir,
            memory,
            redis_url,
            redis_cluster,
            redis_key_prefix,
            redis_presence_ttl_ms,
            namespace,
            default_ttl_ms,
            max_ttl_ms,
            queue_per_device,
            queue_per_device_bytes,
            queue_per_sender,
            queue_per_sender_bytes,
            queue_per_address,
            queue_per_address_bytes,
            queue_total,
            queue_total_bytes,
            max_connections,
            max_connections_per_address,
            registration_timeout_secs,
            device_rate,
            device_burst,
            ip_rate,
            ip_burst,
            turn_secret,
            turn_ttl_secs,
            session_ttl_secs,
            session_max_failed_joins,
            session_joins_per_minute,
            max_sessions,
            session_per_address,
            session_creates_per_minute_per_device,
            session_creates_per_minute_per_ip,
            max_subscriptions,
            max_subscriptions_per_address,
            relay_per_device,
            relay_per_address,
            max_relays,
            relay_max_bytes,
            relay_max_secs,
            max_outgoing_bytes,
            write_stall_timeout_ms,
            metrics_listen,
            metrics_token,
            receive_page
        )
    }

    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::default();
        config.bind = self.bind.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7000)));
        config.store = match self.redis_url {
            Some(url) => {
                if self.memory == Some(true) || self.data_dir.is_some() {
                    anyhow::bail!("invalid setting redis_url: cannot be combined with memory or data_dir");
                }
                let mut store = StoreConfig::redis(url);
                if let StoreConfig::Redis { cluster, key_prefix, presence_ttl, .. } = &mut store {
                    set(cluster, self.redis_cluster);
                    set(key_prefix, self.redis_key_prefix);
                    set(presence_ttl, self.redis_presence_ttl_ms.map(Duration::from_millis));
                }
                store
            }
            None if self.redis_cluster.is_some()
                || self.redis_key_prefix.is_some()
                || self.redis_presence_ttl_ms.is_some() =>
            {
                anyhow::bail!(
                    "invalid setting redis_cluster / redis_key_prefix / redis_presence_ttl_ms: they need redis_url"
                )
            }
            None if self.memory == Some(true) => StoreConfig::Memory,
            None => {
                StoreConfig::Sqlite { data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("peers-signaling-data")) }
            }
        };
        if let Some(namespace) = self.namespace {
            config.namespace = namespace;
        }
        let queue = &mut config.queue;
        set(&mut queue.default_ttl, self.default_ttl_ms.map(Duration::from_millis));
        set(&mut queue.max_ttl, self.max_ttl_ms.map(Duration::from_millis));
        set(&mut queue.per_device_messages, self.queue_per_device);
        set(&mut queue.per_device_bytes, self.queue_per_device_bytes);
        set(&mut queue.per_sender_messages, self.queue_per_sender);
        set(&mut queue.per_sender_bytes, self.queue_per_sender_bytes);
        set(&mut queue.per_address_messages, self.queue_per_address);
        set(&mut queue.per_address_bytes, self.queue_per_address_bytes);
        set(&mut queue.total_messages, self.queue_total);
        set(&mut queue.total_bytes, self.queue_total_bytes);
        set(&mut config.max_connections, self.max_connections);
        set(&mut config.max_connections_per_address, self.max_connections_per_address);
        config.public_origins = self.public_origins;
        set(&mut config.registration_timeout, self.registration_timeout_secs.map(Duration::from_secs));
        let rates = &mut config.rate_limits;
        set(&mut rates.device_per_second, self.device_rate);
        set(&mut rates.device_burst, self.device_burst);
        set(&mut rates.ip_per_second, self.ip_rate);
        set(&mut rates.ip_burst, self.ip_burst);
        config.ice.stun_urls = self.stun_urls;
        config.ice.turn_urls = self.turn_urls;
        config.ice.turn_secret = self.turn_secret;
        set(&mut config.ice.credential_ttl, self.turn_ttl_secs.map(Duration::from_secs));
        set(&mut config.sessions.default_ttl, self.session_ttl_secs.map(Duration::from_secs));
        set(&mut config.sessions.max_failed_joins, self.session_max_failed_joins);
        set(&mut config.sessions.joins_per_minute_per_ip, self.session_joins_per_minute);
        set(&mut config.sessions.max_sessions, self.max_sessions);
        set(&mut config.sessions.per_address, self.session_per_address);
        set(&mut config.sessions.creates_per_minute_per_device, self.session_creates_per_minute_per_device);
        set(&mut config.sessions.creates_per_minute_per_ip, self.session_creates_per_minute_per_ip);
        set(&mut config.max_subscriptions, self.max_subscriptions);
        set(&mut config.max_subscriptions_per_address, self.max_subscriptions_per_address);
        set(&mut config.relay.per_device, self.relay_per_device);
        set(&mut config.relay.per_address, self.relay_per_address);
        set(&mut config.relay.max_relays, self.max_relays);
        set(&mut config.relay.max_bytes, self.relay_max_bytes);
        set(&mut config.relay.max_duration, self.relay_max_secs.map(Duration::from_secs));
        config.cors_origins = self.cors_origins;
        config.metrics_listen = self.metrics_listen;
        config.metrics_token = self.metrics_token;
        config.receive_page = self.receive_page.as_deref().map(peers_signaling::ReceivePage::load).transpose()?;
        set(&mut config.max_outgoing_bytes, self.max_outgoing_bytes);
        set(&mut config.write_stall_timeout, self.write_stall_timeout_ms.map(Duration::from_millis));
        Ok(config)
    }
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Settings::parse();
    let settings = match &cli.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            let file: Settings = toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
            cli.or(file)
        }
        None => cli,
    };
    let config = settings.into_config()?;
    config.validate().context("invalid configuration")?;
    let server = SignalingServer::bind(config).await.context("starting the signaling server")?;
    println!("listening on {}", server.url().unwrap_or_default());
    if let Some(addr) = server.metrics_addr() {
        println!("metrics on http://{addr}/metrics");
    }
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
    server.shutdown().await;
    Ok(())
}
