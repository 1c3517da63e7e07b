//! OpenSSL cipher lists (`ssl_ciphers`, `proxy_ssl_ciphers`) mapped onto rustls's
//! suites: names and aliases select among the six TLS 1.2 suites rustls has; what has
//! no rustls equivalent is reported, never replaced by something else.

use rustls::crypto::ring::cipher_suite as cs;
use rustls::SupportedCipherSuite;

use crate::config::tls::TLS12_SUITES;

/// Aliases every rustls TLS 1.2 suite belongs to.
const ALIASES_OF_ALL: &[&str] = &[
    "ALL", "DEFAULT", "HIGH", "EECDH", "kEECDH", "ECDHE", "kECDHE", "ECDH", "TLSv1.2",
];

/// OpenSSL aliases that select none of rustls's suites: naming them is not a mistake,
/// there is just nothing of them to offer.
const ALIASES_OF_NONE: &[&str] = &[
    "aNULL",
    "eNULL",
    "NULL",
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
    "MEDIUM",
    "LOW",
    "EXP",
    "EXPORT",
    "MD5",
    "SHA1",
    "SHA",
    "SHA256",
    "SHA384",
    "RC4",
    "DES",
    "3DES",
    "IDEA",
    "SEED",
    "CAMELLIA",
    "CAMELLIA128",
    "CAMELLIA256",
    "ARIA",
    "ARIA128",
    "ARIA256",
    "AESCCM",
    "AESCCM8",
    "PSK",
    "kPSK",
    "aPSK",
    "SRP",
    "kSRP",
    "DSS",
    "aDSS",
    "DH",
    "kDH",
    "EDH",
    "kEDH",
    "DHE",
    "kDHE",
    "ADH",
    "AECDH",
    "kRSA",
    "RSA",
    "aGOST",
    "GOST",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "AEAD",
    "CBC",
    "SUITEB128",
    "SUITEB192",
];

/// What `ssl_ciphers` selects: the suites in order, and the names that matched no rustls
/// suite (to warn about).
pub(super) fn select_ciphers(list: &str) -> (Vec<SupportedCipherSuite>, Vec<String>) {
    // Indices into TLS12_SUITES, in list order; `removed` never come back (`!`).
    let mut chosen: Vec<usize> = Vec::new();
    let mut banned: Vec<usize> = Vec::new();
    let mut unmapped = Vec::new();
    let mut by_strength = false;
    for item in list.split([':', ' ', ',']).filter(|s| !s.is_empty()) {
        let (op, name) = match item.as_bytes()[0] {
            b'!' | b'-' | b'+' => (item.as_bytes()[0], &item[1..]),
            _ => (0, item),
        };
        if name == "@STRENGTH" {
            by_strength = true;
            continue;
        }
        if name.starts_with('@') {
            continue;
        }
        let parts: Vec<&str> = name.split('+').collect();
        let mut known = true;
        let matches: Vec<usize> = (0..TLS12_SUITES.len())
            .filter(|&i| {
                let (own, _, tags, _) = TLS12_SUITES[i];
                parts.iter().all(|p| {
                    let hit = *p == own || ALIASES_OF_ALL.contains(p) || tags.contains(p);
                    if !hit
                        && !ALIASES_OF_NONE.contains(p)
                        && !TLS12_SUITES.iter().any(|s| s.2.contains(p) || s.0 == *p)
                        && !p.contains('-')
                        && !p.starts_with("TLS_")
                    {
                        known = false;
                    }
                    hit
                })
            })
            .collect();
        match op {
            b'!' => {
                banned.extend(&matches);
                chosen.retain(|i| !matches.contains(i));
            }
            b'-' => chosen.retain(|i| !matches.contains(i)),
            b'+' => {
                let moved: Vec<usize> = chosen
                    .iter()
                    .copied()
                    .filter(|i| matches.contains(i))
                    .collect();
                chosen.retain(|i| !matches.contains(i));
                chosen.extend(moved);
            }
            _ => {
                if matches.is_empty() {
                    unmapped.push(if known {
                        item.to_owned()
                    } else {
                        format!("{item} (unknown to OpenSSL too)")
                    });
                }
                for i in matches {
                    if !chosen.contains(&i) && !banned.contains(&i) {
                        chosen.push(i);
                    }
                }
            }
        }
    }
    if by_strength {
        chosen.sort_by_key(|&i| std::cmp::Reverse(TLS12_SUITES[i].3));
    }
    (
        chosen.into_iter().map(|i| TLS12_SUITES[i].1).collect(),
        unmapped,
    )
}

/// The TLS 1.3 suites (OpenSSL sets them apart from `ssl_ciphers`).
pub(super) const TLS13_SUITES: &[SupportedCipherSuite] = &[
    cs::TLS13_AES_256_GCM_SHA384,
    cs::TLS13_CHACHA20_POLY1305_SHA256,
    cs::TLS13_AES_128_GCM_SHA256,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> Vec<String> {
        select_ciphers(list)
            .0
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect()
    }

    #[test]
    fn openssl_lists_map_to_rustls_suites() {
        assert_eq!(names("HIGH:!aNULL:!MD5").len(), 6);
        assert_eq!(
            names("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"),
            [
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
            ]
        );
        assert_eq!(names("ECDHE+AESGCM:!ECDSA").len(), 2);
        assert_eq!(names("CHACHA20:HIGH:!aRSA").len(), 3);
        assert!(names("!ALL:HIGH").is_empty());
        let (_, unmapped) =
            select_ciphers("ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:!aNULL:FOO");
        assert_eq!(
            unmapped,
            ["DHE-RSA-AES128-GCM-SHA256", "FOO (unknown to OpenSSL too)"]
        );
        let strength = names("AES128:CHACHA20:@STRENGTH");
        assert!(strength[0].contains("CHACHA20"), "{strength:?}");
    }
}
