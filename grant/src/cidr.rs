//! CIDR blocks for the optional `src` claim.

use core::net::IpAddr;

/// An address block such as `10.1.0.0/16` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address/prefix`. Host bits may be set; they are ignored.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in this block. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`) is treated as the IPv4 address it carries, since
    /// dual-stack proxies report IPv4 clients that way.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_and_v6_blocks_match() {
        let v4 = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(v4.contains(ip("10.1.200.9")));
        assert!(!v4.contains(ip("10.2.0.1")));
        assert!(v4.contains(ip("::ffff:10.1.2.3")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8::5")));
        assert!(!v6.contains(ip("10.1.2.3")));
    }

    #[test]
    fn edge_prefixes() {
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("1.2.3.4/32").unwrap().contains(ip("1.2.3.4")));
        assert!(!Cidr::parse("1.2.3.4/32").unwrap().contains(ip("1.2.3.5")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn bad_blocks_are_refused() {
        for s in [
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/",
        ] {
            assert_eq!(Cidr::parse(s), None, "{s}");
        }
    }
}
