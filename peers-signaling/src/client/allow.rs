//! [`SignalingClient::set_allow`]: replacing this device's allow list at the
//! server, signed over the connection's challenge and a counter.

use peers_sdk::DeviceKeys;

use super::SignalingClient;
use crate::error::{Error, Result};
use crate::protocol::{self, AllowList, NONCE_LEN, events};

/// What an `"allow"` request signs, kept from the registration.
pub(super) struct AllowSigner {
    keys: DeviceKeys,
    nonce: [u8; NONCE_LEN],
    origin: String,
    /// The last counter used on this connection.
    counter: u64,
}

impl std::fmt::Debug for AllowSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllowSigner").field("origin", &self.origin).field("counter", &self.counter).finish()
    }
}

impl AllowSigner {
    /// For the connection whose challenge was `nonce`, registered at the
    /// server `url`.
    pub(super) fn new(keys: &DeviceKeys, nonce: &str, url: &str) -> Result<AllowSigner> {
        let nonce = protocol::decode_fixed::<NONCE_LEN>("nonce", nonce)
            .map_err(|r| Error::Protocol { what: "challenge", detail: r.message })?;
        let origin = protocol::server_origin(url).map_err(|detail| Error::Protocol { what: "challenge", detail })?;
        Ok(AllowSigner { keys: keys.clone(), nonce, origin, counter: 0 })
    }
}

impl SignalingClient {
    /// Replaces the list of devices that may reach this one through the
    /// server: `Some(list)` (an empty list: nobody), or `None` (everyone, as
    /// without a list). From the reply on, a device not on the list sees this
    /// one as a device that does not exist (`docs/signaling.md`, section 5a).
    /// Calls are made one at a time, each with the next counter.
    ///
    /// # Errors
    /// [`Error::Refused`] if the server refused the request, or the request
    /// failed (closed, timed out).
    pub async fn set_allow(&self, allow: Option<&AllowList>) -> Result<()> {
        let mut guard = self.inner.allow_signer.lock().await;
        let Some(signer) = guard.as_mut() else {
            return Err(Error::Protocol { what: "allow request", detail: "not registered".into() });
        };
        signer.counter += 1;
        let request = protocol::sign_allow(&signer.keys, &signer.nonce, &signer.origin, signer.counter, allow);
        let request = serde_json::to_value(request)
            .map_err(|err| Error::Protocol { what: "allow request", detail: err.to_string() })?;
        self.request_as(events::ALLOW, "allow list", request).await?;
        Ok(())
    }
}
