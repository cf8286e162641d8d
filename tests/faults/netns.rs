//! A real network link to cut: a network namespace of the test's own,
//! joined to the test's namespace by a veth pair with a /30 of private
//! addresses. A service started inside reaches the broker only over that
//! link; taking the root side's end down cuts it as a pulled cable would
//! (no RST, no FIN: packets just stop). Nothing leaves the machine. Needs
//! root (CAP_NET_ADMIN) and `ip` (iproute2); `Drop` removes both.

use std::process::Command;

pub struct Netns {
    /// The namespace's name, for `ip netns exec`.
    pub name: String,
    /// The root side's end of the veth pair.
    host_end: String,
    /// The root side's address: listen on it to be reached from inside.
    pub host_addr: String,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("run `ip {}`: {e} (the network-cut fault needs iproute2: scripts/install-deps)", args.join(" "))
    });
    assert!(
        output.status.success(),
        "`ip {}` failed (the network-cut fault needs root, for network namespaces): {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Netns {
    /// A namespace and veth pair named after this process, so two test runs
    /// on one machine do not collide.
    pub fn create() -> Netns {
        let pid = std::process::id();
        let name = format!("gcf{pid}");
        let (host_end, inner_end) = (format!("gcfh{pid}"), format!("gcfn{pid}"));
        // 10.213.0.0/16 in /30s by pid: .1 outside, .2 inside.
        let net = (pid % 16_384) * 4;
        let (third, fourth) = (net / 256, net % 256);
        let host_addr = format!("10.213.{third}.{}", fourth + 1);
        let inner_addr = format!("10.213.{third}.{}", fourth + 2);
        let _ = Command::new("ip").args(["netns", "del", &name]).output(); // a leftover of a killed run
        let _ = Command::new("ip").args(["link", "del", &host_end]).output();
        ip(&["netns", "add", &name]);
        let netns = Netns { name, host_end, host_addr };
        ip(&["link", "add", &netns.host_end, "type", "veth", "peer", "name", &inner_end]);
        ip(&["link", "set", &inner_end, "netns", &netns.name]);
        ip(&["addr", "add", &format!("{}/30", netns.host_addr), "dev", &netns.host_end]);
        ip(&["link", "set", &netns.host_end, "up"]);
        let inside = |args: &[&str]| ip(&[&["netns", "exec", &netns.name, "ip"][..], args].concat());
        inside(&["addr", "add", &format!("{inner_addr}/30"), "dev", &inner_end]);
        inside(&["link", "set", &inner_end, "up"]);
        inside(&["link", "set", "lo", "up"]);
        netns
    }

    /// Cuts the link.
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_end, "down"]);
    }

    /// Restores the link.
    pub fn restore(&self) {
        ip(&["link", "set", &self.host_end, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_end]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}
