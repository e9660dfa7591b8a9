//! Issue 9: an operator deletes the native interface (`ip link del amt0`) under a running
//! gateway. The driver notices within its one-second check and makes the TUN again (up, MTU set,
//! rp_filter off), keeping its tunnels; before the fix it went on writing into a detached
//! descriptor and never noticed. Needs root (a network namespace and a TUN).

mod common;

use std::time::{Duration, Instant};

use common::Netns;
use mcast_amt_gateway::{Config, spawn};

#[test]
fn a_deleted_tun_is_made_again() {
    require_root!();
    let g = Netns::new("G");
    // By name in the calling thread's namespace (/sys/class/net shows the host's).
    let ifindex = || nix::net::if_::if_nametoindex("amtr0").ok();
    let link = || {
        let out = std::process::Command::new("ip").args(["-o", "link", "show", "amtr0"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    g.run(|| {
        // The driver's task runs on this thread (a current-thread runtime), inside the namespace.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut config = Config::new("amtr0");
            config.local_v4 = Some("127.0.0.1:0".parse().unwrap());
            config.local_v6 = None;
            let (handle, _events, task) = spawn(config).unwrap();
            let status = handle.status().await.unwrap();
            assert_eq!(status.driver.tun_recreated, 0);
            let first = ifindex().expect("amtr0 exists");
            let out = std::process::Command::new("ip").args(["link", "del", "amtr0"]).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if handle.status().await.unwrap().driver.tun_recreated == 1 {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(3), "the TUN was not made again within 3 s");
            }
            let again = ifindex().expect("amtr0 made again");
            assert_ne!(first, again, "a new device");
            assert!(link().contains(",UP"), "up: {}", link());
            assert_eq!(mcast_mroute::tun::rp_filter("amtr0").unwrap(), 0, "rp_filter off");
            // Nothing more happens while it exists.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(handle.status().await.unwrap().driver.tun_recreated, 1);
            handle.shutdown().await.unwrap();
            task.await.unwrap();
        });
    });
    assert_eq!(g.run(ifindex), None, "gone with the gateway");
}
