//! Ethernet MAC addresses.

use std::fmt;
use std::str::FromStr;

/// An Ethernet (EUI-48) address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff, the Ethernet broadcast address.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    /// 00:00:00:00:00:00, the "unknown" hardware address of ARP requests (RFC 5227 §2.1.1).
    pub const ZERO: Mac = Mac([0; 6]);
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

// Debug as Display: a list of six decimal numbers is unreadable in logs and test failures.
impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

/// A string that is not six colon-separated pairs of hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six colon-separated hex pairs like 02:00:5e:10:00:01")]
pub struct ParseMacError(String);

impl FromStr for Mac {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Mac, ParseMacError> {
        let invalid = || ParseMacError(s.to_owned());
        let mut parts = s.split(':');
        let mut mac = [0; 6];
        for byte in &mut mac {
            let part = parts.next().ok_or_else(invalid)?;
            // from_str_radix alone would also take "+a" or "a".
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Mac(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_lowercase_with_colons() {
        let mac = Mac([0x02, 0x00, 0x5e, 0x10, 0xab, 0xff]);
        assert_eq!(mac.to_string(), "02:00:5e:10:ab:ff");
        assert_eq!(format!("{mac:?}"), "Mac(02:00:5e:10:ab:ff)");
    }

    #[test]
    fn parses_either_case() {
        let want = Mac([0x02, 0x00, 0x5e, 0x10, 0xab, 0xff]);
        assert_eq!("02:00:5e:10:ab:ff".parse(), Ok(want));
        assert_eq!("02:00:5E:10:AB:FF".parse(), Ok(want));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "02:00:5e:10:ab",
            "02:00:5e:10:ab:ff:00",
            "02:00:5e:10:ab:",
            "2:00:5e:10:ab:ff",
            "+2:00:5e:10:ab:ff",
            "02-00-5e-10-ab-ff",
            "020:0:5e:10:ab:ff",
            "02:00:5e:10:ab:fg",
            "02:00:5e:10:ab:ff ",
            "é2:00:5e:10:ab:ff",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            "x".parse::<Mac>().unwrap_err().to_string(),
            r#"invalid MAC address "x": expected six colon-separated hex pairs like 02:00:5e:10:00:01"#
        );
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(bytes: [u8; 6]) {
            let mac = Mac(bytes);
            prop_assert_eq!(mac.to_string().parse(), Ok(mac));
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Mac>();
        }
    }
}
