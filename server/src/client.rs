//! Who a request comes from, as every per-client limit sees it.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// A client address as limits see it: IPv4 as is, IPv6 by its /64 (one
/// host's usual allocation; per address would let it use 2⁶⁴ of them).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
        v4 => v4,
    }
}

/// One client: the key of its address. The accept loop puts it in each
/// request's extensions; behind `--behind-proxy` it is the forwarded
/// address (`routes::limit_per_client`). Shares of the memory budget and
/// of the connection slots are counted per `Client` (`fair_share.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(ip: IpAddr) -> Self {
        Client(client_key(ip))
    }

    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    /// The extension, else the peer address; a router driven without the
    /// accept loop (none in production) counts as one unspecified client.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        if let Some(client) = parts.extensions.get::<Client>() {
            return Ok(*client);
        }
        Ok(match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => Client::of(peer.ip()),
            None => Client(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let of = |s: &str| Client::of(s.parse().unwrap());
        assert_eq!(of("2001:db8::1"), of("2001:db8::ffff:2"));
        assert_ne!(of("2001:db8::1"), of("2001:db8:0:1::1"));
        assert_eq!(of("192.0.2.1"), of("::ffff:192.0.2.1"));
    }
}
