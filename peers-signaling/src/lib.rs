//! The peers signaling server and the client devices use to reach it.
