//! The peers `Socket` over a WebRTC data channel.
