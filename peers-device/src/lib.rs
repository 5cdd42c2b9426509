//! peers-device.
