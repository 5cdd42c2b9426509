//! The frame relay's shared part (`relay.lua`): waiting requests, the pairing
//! of two requests made on any instances, the open relays (for the cap), and
//! the instance-to-instance channel `P:relay:<instance>` that carries each
//! relay's events between the instances of its two parties.

use std::net::IpAddr;

use peers_sdk::DeviceId;

use super::{RedisState, bad_reply, checked_keys, millis, redis_error};
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

    /// A call of `relay.lua` in the slot of `base`.
    fn relay_call(&self, base: String, op: &str) -> redis::ScriptInvocation<'_> {
        let [base] = checked_keys([base]);
        let mut call = self.scripts.relay.prepare_invoke();
        call.key(base).arg(op);
        call
    }

    /// The counts of open relays of `device` and its address group
    /// (`address`, '' when unknown), with their limits.
    fn relay_counts(&self, device: &str, address: &str, limits: &RelayLimits) -> Vec<(String, usize)> {
        let mut counts = vec![(self.keys.relays_of_device(device), limits.per_device)];
        if !address.is_empty() {
            counts.push((self.keys.relays_of_address(address), limits.per_address));
        }
        counts
    }

    /// Counts `ticket` (until `until`) against the relay count at `base`
    /// if it has room below `limit`; whether it had.
    async fn hold(&self, base: &str, now: u64, ticket: &str, until: u64, limit: usize) -> Result<bool> {
        let mut call = self.quota_call(base, "reserve");
        call.arg(now).arg(ticket).arg(until).arg(0).arg(limit).arg(u64::MAX).arg("1");
        let reply: Vec<String> =
            call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("open a relay"))?;
        Ok(reply.first().map(String::as_str) == Some("ok"))
    }

    /// Uncounts `ticket` from the relay counts at `bases`.
    async fn unhold(&self, bases: &[String], ticket: &str) -> Result<()> {
        for base in bases {
            self.uncount_members(base, &[ticket.to_owned()]).await?;
        }
        Ok(())
    }

    /// Holds `ticket` against each of `counts` in turn; the quota that had
    /// no room (`whose[i]` for the i-th), after giving back what it held.
    async fn hold_all(
        &self,
        counts: Vec<(String, usize)>,
        whose: [RelayQuota; 2],
        now: u64,
        ticket: &str,
        until: u64,
        held: &mut Vec<String>,
    ) -> Result<Option<RelayQuota>> {
        for ((base, limit), whose) in counts.into_iter().zip(whose) {
            if !self.hold(&base, now, ticket, until, limit).await? {
                self.unhold(held, ticket).await?;
                return Ok(Some(whose));
            }
            if !held.contains(&base) {
                held.push(base);
            }
        }
        Ok(None)
    }

    /// `from` (connection `token`) asks for a relay with `to`: pairs it with
    /// `to`'s waiting request, or leaves it waiting. In steps of one slot:
    /// `from`'s and its address's relay counts (held for this request),
    /// `to`'s waiting request in the pair's slot (or `from`'s pending count
    /// and its own waiting request: the pair's slot is one, so two requests
    /// made at once pair exactly once), `to`'s and its address's counts,
    /// the cap, then the held counts become the relay's.
    pub(crate) async fn relay_open(
        &self,
        now: u64,
        from: &DeviceId,
        to: &DeviceId,
        origin: Option<IpAddr>,
        token: &str,
        limits: &RelayLimits,
    ) -> Result<RelayPairing> {
        let (from, to) = (from.to_string(), to.to_string());
        let address = origin.map(|ip| ip.to_string()).unwrap_or_default();
        let ticket = format!("{from}>{to}|{token}");
        let lapse = now.saturating_add(millis(limits.pending_wait));
        let mut held = Vec::new();
        let mine = self.relay_counts(&from, &address, limits);
        let quotas = [RelayQuota::Device, RelayQuota::Address];
        if let Some(whose) = self.hold_all(mine, quotas, now, &ticket, lapse, &mut held).await? {
            return Ok(RelayPairing::Quota(whose));
        }
        let pair = self.keys.relay_pair(&from, &to);
        let mut meet = self.relay_call(pair.clone(), "meet");
        meet.arg(&from).arg(&to).arg(now);
        let mut reply: Vec<String> =
            meet.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("open a relay"))?;
        if reply.first().map(String::as_str) == Some("none") {
            let mut pend = self.relay_call(self.keys.device(&from), "pend");
            pend.arg(&to).arg(token).arg(now).arg(lapse).arg(limits.max_pending_per_device);
            let pended: String =
                pend.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("open a relay"))?;
            if pended == "busy" {
                self.unhold(&held, &ticket).await?;
                return Ok(RelayPairing::Busy);
            }
            let mut wait = self.relay_call(pair, "wait");
            wait.arg(&from).arg(&to).arg(now).arg(lapse).arg(&address).arg(token);
            reply = wait.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("open a relay"))?;
            if reply.first().map(String::as_str) == Some("waiting") {
                self.unhold(&held, &ticket).await?;
                return Ok(RelayPairing::Waiting);
            }
            self.unpend(&from, &to).await?;
        }
        let bad = || bad_reply("open a relay", format!("{reply:?}"));
        let [met, their_address, their_token] = reply.as_slice() else { return Err(bad()) };
        if met != "met" {
            return Err(bad());
        }
        self.unpend(&to, &from).await?;
        let theirs = self.relay_counts(&to, their_address, limits);
        let quotas = [RelayQuota::Peer, RelayQuota::PeerAddress];
        if let Some(whose) = self.hold_all(theirs, quotas, now, &ticket, lapse, &mut held).await? {
            return Ok(RelayPairing::Quota(whose));
        }
        let mut open = self.relay_call(self.keys.relays(), "open");
        let parties = format!("{to}|{from}|{their_address}|{address}");
        open.arg(now).arg(limits.max_relays).arg(millis(limits.max_duration)).arg(parties);
        let opened: Vec<String> =
            open.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("open a relay"))?;
        let number = |i: usize| opened.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(bad);
        match opened.first().map(String::as_str) {
            Some("open") => {
                let (id, deadline) = (number(1)?, number(2)?);
                for base in &held {
                    let mut swap = self.quota_call(base, "swap");
                    swap.arg(&ticket).arg(id).arg(deadline);
                    let _: u64 =
                        swap.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("open a relay"))?;
                }
                Ok(RelayPairing::Open { id, deadline, holder: their_token.clone() })
            }
            Some("full") => {
                self.unhold(&held, &ticket).await?;
                Ok(RelayPairing::Full)
            }
            _ => Err(bad()),
        }
    }

    /// `device` no longer waits for `peer`.
    async fn unpend(&self, device: &str, peer: &str) -> Result<()> {
        let mut call = self.relay_call(self.keys.device(device), "unpend");
        call.arg(peer);
        call.invoke_async::<u64>(&mut self.connection.clone()).await.map(drop).map_err(redis_error("open a relay"))
    }

    /// Relay `id` ended: it no longer counts against the cap nor its
    /// parties' quotas.
    pub(crate) async fn relay_forget(&self, id: u64) -> Result<()> {
        let mut call = self.relay_call(self.keys.relays(), "forget");
        call.arg(id);
        let parties: String =
            call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("forget a relay"))?;
        let fields: Vec<&str> = parties.split('|').collect();
        let [a, b, a_address, b_address] = fields.as_slice() else { return Ok(()) };
        let id = id.to_string();
        for device in [a, b] {
            self.uncount_members(&self.keys.relays_of_device(device), std::slice::from_ref(&id)).await?;
        }
        for address in [a_address, b_address].into_iter().filter(|a| !a.is_empty()) {
            self.uncount_members(&self.keys.relays_of_address(address), std::slice::from_ref(&id)).await?;
        }
        Ok(())
    }

    /// Connection `token` of `device` closed: its waiting requests lapse.
    pub(crate) async fn relay_drop(&self, device: &DeviceId, token: &str) -> Result<()> {
        let device = device.to_string();
        let mut call = self.relay_call(self.keys.device(&device), "drop");
        call.arg(token);
        let peers: Vec<String> =
            call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("drop relay requests"))?;
        for peer in peers {
            let mut call = self.relay_call(self.keys.relay_pair(&device, &peer), "withdraw");
            call.arg(&device).arg(token);
            let _: u64 =
                call.invoke_async(&mut self.connection.clone()).await.map_err(redis_error("drop relay requests"))?;
        }
        Ok(())
    }

    /// Publishes `payload` on `channel`; returns how many subscribers got it
    /// (0: the instance behind the channel is gone).
    pub(crate) async fn publish(&self, channel: &str, payload: &str) -> Result<u64> {
        self.connection.publish(channel, payload.as_bytes()).await.map_err(redis_error("publish a relay event"))
    }
}
