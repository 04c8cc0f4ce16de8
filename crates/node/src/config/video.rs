//! `[video]`: how a node sends video to other nodes' multicast groups and
//! receives theirs (the scaler decides which streams and groups; see
//! `scnf_core::cluster::video`).

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// `[video]` of the node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VideoSection {
    /// The interface multicast leaves by and groups are joined on, by its address
    /// (`IP_MULTICAST_IF`). Default: the advertised media address when it is IPv4.
    pub multicast_interface: Option<Ipv4Addr>,
    /// Hops multicast may cross. Default 1: a cluster's nodes share a subnet.
    pub multicast_ttl: u32,
    /// Whether this host receives its own multicast (only when nodes share a
    /// host). Default false.
    pub multicast_loop: bool,
}

impl Default for VideoSection {
    fn default() -> Self {
        VideoSection {
            multicast_interface: None,
            multicast_ttl: 1,
            multicast_loop: false,
        }
    }
}

impl VideoSection {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.multicast_ttl > 255 {
            return Err(invalid("video.multicast_ttl", "must be 0..=255"));
        }
        if let Some(ip) = self.multicast_interface {
            if ip.is_multicast() || ip.is_broadcast() {
                return Err(invalid(
                    "video.multicast_interface",
                    format!("{ip} is not an interface address"),
                ));
            }
        }
        Ok(())
    }
}
