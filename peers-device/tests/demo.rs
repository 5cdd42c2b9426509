//! `peers demo` (the README's first command) does what it says: every device
//! connects, the desktop starts on the relay and upgrades to WebRTC, the changes
//! reach every member, and the private group stays private.

use peers_device::ConnectionClass;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_connects_upgrades_and_syncs() {
    let mut story = Vec::new();
    let summary = peers_device::demo::run(&mut story).await.unwrap();
    let story = String::from_utf8(story).unwrap();
    assert!(story.contains("[5/5]") && story.contains("done in"), "{story}");
    assert_eq!(summary.desktop_path, vec![ConnectionClass::ServerRelay, ConnectionClass::WebRtcDirect], "{story}");
    assert!(summary.note_stayed_private, "{story}");
    let classes = |name: &str| -> Vec<ConnectionClass> {
        let (_, status) = summary.devices.iter().find(|(n, _)| n == name).unwrap();
        let mut classes: Vec<_> = status.connections.iter().filter(|c| c.active).map(|c| c.class).collect();
        classes.sort();
        classes
    };
    assert_eq!(classes("laptop"), vec![ConnectionClass::Local, ConnectionClass::WebRtcDirect]);
    assert_eq!(classes("phone"), vec![ConnectionClass::Local, ConnectionClass::WebRtcDirect]);
    assert_eq!(classes("desktop"), vec![ConnectionClass::WebRtcDirect, ConnectionClass::WebRtcDirect]);
    assert!(summary.sync_time.as_secs() < 30);
}
