//! The transports the manager dials and listens with: one file per way of
//! reaching a device. `signaling_link` is the client side of the signaling
//! server (the link that keeps a device registered, WebRTC signals through it,
//! its frame relay as a dialer); the server itself is `peers-signaling`'s.

mod allow_sync;
pub(crate) mod signaling_link;
mod socketio;
mod webrtc;

pub use crate::manager::LinkState;
pub use signaling_link::{ReconnectOptions, RelayDialer, ServerSignaling, ServerUrls, SignalingServerLink};
pub use socketio::{SocketIoDialer, SocketIoListener, url_class};
pub use webrtc::{DeviceMessageSignaling, WEBRTC_SIGNAL_KIND, WebRtcDialer, WebRtcListener};
