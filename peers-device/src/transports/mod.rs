//! The transports the manager dials and listens with.

mod socketio;

pub use socketio::{SocketIoDialer, SocketIoListener, url_class};
