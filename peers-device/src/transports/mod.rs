//! The transports the manager dials and listens with.

mod server;
mod socketio;
mod webrtc;

pub use crate::manager::LinkState;
pub use server::{ReconnectOptions, RelayDialer, ServerSignaling, ServerUrls, SignalingServerLink};
pub use socketio::{SocketIoDialer, SocketIoListener, url_class};
pub use webrtc::{DeviceMessageSignaling, WEBRTC_SIGNAL_KIND, WebRtcDialer, WebRtcListener};
