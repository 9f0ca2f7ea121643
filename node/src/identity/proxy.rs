//! Trusted-proxy identity: an authenticating proxy in front of the nodes
//! passes the subject (and optionally groups) in configured headers. The
//! headers are believed only on connections from configured source
//! networks; from anywhere else they are ignored.

use std::net::IpAddr;

use crate::config::ConfigError;

/// An address block such as `10.0.0.0/8` or `fd00::/8`; a bare address is
/// a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or address/prefix"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    /// Whether `addr` is in the block. An IPv4-mapped IPv6 address counts
    /// as its IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The trusted-proxy settings.
#[derive(Debug, Clone)]
pub struct TrustedProxy {
    /// Lowercase header names.
    pub subject_header: String,
    pub groups_header: Option<String>,
    pub sources: Vec<Cidr>,
}

fn header_name(flag: &'static str, name: &str) -> Result<String, ConfigError> {
    let lower = name.trim().to_ascii_lowercase();
    axum::http::HeaderName::from_bytes(lower.as_bytes()).map_err(|_| ConfigError::Invalid {
        flag,
        problem: format!("{name:?} is not a header name"),
    })?;
    if lower == "authorization" {
        return Err(ConfigError::Invalid {
            flag,
            problem: "must not be Authorization".into(),
        });
    }
    Ok(lower)
}

impl TrustedProxy {
    /// `None` without a subject header; sources are then not allowed.
    pub fn from_flags(
        header: Option<&str>,
        groups_header: Option<&str>,
        cidrs: &[String],
    ) -> Result<Option<TrustedProxy>, ConfigError> {
        let Some(header) = header else {
            if !cidrs.is_empty() || groups_header.is_some() {
                return Err(ConfigError::Invalid {
                    flag: "--trusted-proxy-header",
                    problem:
                        "is required with --trusted-proxy-cidr and --trusted-proxy-groups-header"
                            .into(),
                });
            }
            return Ok(None);
        };
        let subject_header = header_name("--trusted-proxy-header", header)?;
        let groups_header = groups_header
            .map(|h| header_name("--trusted-proxy-groups-header", h))
            .transpose()?;
        if cidrs.is_empty() {
            return Err(ConfigError::Invalid {
                flag: "--trusted-proxy-cidr",
                problem: "is required with --trusted-proxy-header: the proxy's source networks"
                    .into(),
            });
        }
        let sources = cidrs
            .iter()
            .flat_map(|c| c.split(','))
            .filter(|c| !c.trim().is_empty())
            .map(|c| {
                Cidr::parse(c).map_err(|problem| ConfigError::Invalid {
                    flag: "--trusted-proxy-cidr",
                    problem,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(TrustedProxy {
            subject_header,
            groups_header,
            sources,
        }))
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.sources.iter().any(|c| c.contains(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_contain_their_addresses() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.9.9".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "fd00::/129", "host/8", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_are_checked() {
        assert!(TrustedProxy::from_flags(None, None, &[]).unwrap().is_none());
        assert!(TrustedProxy::from_flags(None, None, &["10.0.0.0/8".into()]).is_err());
        assert!(TrustedProxy::from_flags(Some("X-User"), None, &[]).is_err());
        assert!(TrustedProxy::from_flags(Some("Authorization"), None, &["::1".into()]).is_err());
        assert!(TrustedProxy::from_flags(Some("bad header"), None, &["::1".into()]).is_err());
        let p = TrustedProxy::from_flags(
            Some("X-Forwarded-User"),
            Some("X-Forwarded-Groups"),
            &["127.0.0.0/8,::1".into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.subject_header, "x-forwarded-user");
        assert!(p.trusts("127.0.0.9".parse().unwrap()));
        assert!(p.trusts("::1".parse().unwrap()));
        assert!(!p.trusts("192.168.0.1".parse().unwrap()));
    }
}
