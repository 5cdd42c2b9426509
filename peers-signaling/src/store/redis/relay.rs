//! The frame relay's shared part (`relay.lua`): waiting requests, the pairing
//! of two requests made on any instances, the open relays (for the cap), and
//! the instance-to-instance channel `P:relay:<instance>` that carries each
//! relay's events between the instances of its two parties.

use std::net::IpAddr;

use peers_sdk::DeviceId;

use super::{RedisState, bad_reply, millis, redis_error};
use crate::error::Result;
use crate::relay::RelayLimits;

/// What became of a request handed to [`RedisState::relay_open`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RelayPairing {
    /// The other device had asked: the relay is open.
    Open {
        /// Its id (shared by all instances).
        id: u64,
        /// When it must close (unix ms).
        deadline: u64,
        /// The waiting request's `<instance>|<connection>`.
        holder: String,
    },
    /// Now waiting for the other device.
    Waiting,
    /// The device has too many requests waiting.
    Busy,
    /// Too many relays are open (all instances together).
    Full,
    /// A party or its address is a party of its limit of open relays.
    Quota(RelayQuota),
}

/// Whose relay quota refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelayQuota {
    /// The asking device's.
    Device,
    /// The asking device's address's.
    Address,
    /// The other device's.
    Peer,
    /// The other device's address's.
    PeerAddress,
}

impl RedisState {
    /// The channel instance `instance` receives relay events on.
    pub(crate) fn relay_channel(&self, instance: &str) -> String {
        format!("{}:relay:{instance}", self.prefix)
    }

    /// `from` (connection `token`) asks for a relay with `to`: pairs it with
    /// `to`'s waiting request, or leaves it waiting (atomic, see `relay.lua`).
    pub(crate) async fn relay_open(
        &self,
        now: u64,
        from: &DeviceId,
        to: &DeviceId,
        origin: Option<IpAddr>,
        token: &str,
        limits: &RelayLimits,
    ) -> Result<RelayPairing> {
        let reply: Vec<String> = self
            .scripts
            .relay
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("open")
            .arg(from.to_string())
            .arg(to.to_string())
            .arg(token)
            .arg(now)
            .arg(millis(limits.pending_wait))
            .arg(limits.max_pending_per_device)
            .arg(limits.max_relays)
            .arg(millis(limits.max_duration))
            .arg(origin.map(|ip| ip.to_string()).unwrap_or_default())
            .arg(limits.per_device)
            .arg(limits.per_address)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("open a relay"))?;
        let bad = || bad_reply("open a relay", format!("{reply:?}"));
        let number = |i: usize| reply.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(bad);
        match reply.first().map(String::as_str) {
            Some("open") => Ok(RelayPairing::Open {
                id: number(1)?,
                deadline: number(2)?,
                holder: reply.get(3).cloned().ok_or_else(bad)?,
            }),
            Some("waiting") => Ok(RelayPairing::Waiting),
            Some("busy") => Ok(RelayPairing::Busy),
            Some("full") => Ok(RelayPairing::Full),
            Some("quota") => Ok(RelayPairing::Quota(match reply.get(1).map(String::as_str) {
                Some("device") => RelayQuota::Device,
                Some("address") => RelayQuota::Address,
                Some("peer") => RelayQuota::Peer,
                Some("peer-address") => RelayQuota::PeerAddress,
                _ => return Err(bad()),
            })),
            _ => Err(bad()),
        }
    }

    /// Relay `id` ended: it no longer counts against the cap.
    pub(crate) async fn relay_forget(&self, id: u64) -> Result<()> {
        let _: u64 = self
            .scripts
            .relay
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("forget")
            .arg(id)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("forget a relay"))?;
        Ok(())
    }

    /// Connection `token` of `device` closed: its waiting requests lapse.
    pub(crate) async fn relay_drop(&self, device: &DeviceId, token: &str) -> Result<()> {
        let _: u64 = self
            .scripts
            .relay
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("drop")
            .arg(device.to_string())
            .arg(token)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("drop relay requests"))?;
        Ok(())
    }

    /// Publishes `payload` on `channel`; returns how many subscribers got it
    /// (0: the instance behind the channel is gone).
    pub(crate) async fn publish(&self, channel: &str, payload: &str) -> Result<u64> {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(redis_error("publish a relay event"))
    }
}
