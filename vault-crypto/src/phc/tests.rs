use super::*;

fn b64(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

fn phc(params: &str, salt: &[u8], hash: &[u8]) -> String {
    format!("$argon2id$v=19${params}${}${}", b64(salt), b64(hash))
}

const GOOD_PARAMS: &str = "m=65536,t=3,p=4";

#[test]
fn minimum_strength_hash_is_accepted_and_kept_verbatim() {
    let s = phc(GOOD_PARAMS, &[7; 16], &[9; 32]);
    let parsed = PhcHash::parse(&s).unwrap();
    assert_eq!(parsed.as_str(), s);
    assert_eq!(
        (
            parsed.memory_kib(),
            parsed.iterations(),
            parsed.parallelism()
        ),
        (65536, 3, 4)
    );
    assert!(parsed.matches(&s));
    assert!(!parsed.matches(&phc(GOOD_PARAMS, &[7; 16], &[8; 32])));
    assert!(!parsed.matches(""));
}

#[test]
fn real_library_output_is_accepted() {
    // argon2-cffi 21.1 `PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32).hash(…)`.
    // (Its default hash_len is 16, which v1 refuses too: the app must ask for 32.)
    let s = "$argon2id$v=19$m=65536,t=3,p=4$EzZBgfezT7EUvjRVF+yx/Q$EAsoblcXZjK98Ub1ddlftqbklRRIp9snVETojQoSyWQ";
    PhcHash::parse(s).unwrap();
    let short = "$argon2id$v=19$m=65536,t=3,p=4$4Dkz+2IthYlCXNSS8ED3cA$PCXYf5mBQV4D4YADNr6bbg";
    assert_eq!(PhcHash::parse(short).unwrap_err(), PhcError::HashLength(16));
}

#[test]
fn debug_never_shows_the_hash() {
    let s = phc(GOOD_PARAMS, &[7; 16], &[9; 32]);
    let shown = format!("{:?}", PhcHash::parse(&s).unwrap());
    assert!(
        !shown.contains(&b64(&[9; 32])) && !shown.contains(&b64(&[7; 16])),
        "{shown}"
    );
    assert!(shown.contains("redacted"));
}

#[test]
fn each_violation_has_its_own_error() {
    let salt = [1u8; 16];
    let hash = [2u8; 32];
    let cases: Vec<(String, PhcError)> = vec![
        ("x".repeat(MAX_ENCODED_LEN + 1), PhcError::TooLong),
        (String::new(), PhcError::Malformed),
        (
            "argon2id$v=19$m=65536,t=3,p=4$a$b$".into(),
            PhcError::Malformed,
        ),
        (
            format!("x{}", phc(GOOD_PARAMS, &salt, &hash)),
            PhcError::Malformed,
        ),
        (
            format!("{}$extra", phc(GOOD_PARAMS, &salt, &hash)),
            PhcError::Malformed,
        ),
        (
            phc(GOOD_PARAMS, &salt, &hash).replace("argon2id", "argon2i"),
            PhcError::Algorithm,
        ),
        (
            phc(GOOD_PARAMS, &salt, &hash).replace("argon2id", "ARGON2ID"),
            PhcError::Algorithm,
        ),
        (
            phc(GOOD_PARAMS, &salt, &hash).replace("v=19", "v=16"),
            PhcError::Version,
        ),
        (
            format!("$argon2id${GOOD_PARAMS}${}${}", b64(&salt), b64(&hash)),
            PhcError::Malformed,
        ),
        (phc("t=3,m=65536,p=4", &salt, &hash), PhcError::Params),
        (phc("m=65536,t=3", &salt, &hash), PhcError::Params),
        (
            phc("m=65536,t=3,p=4,keyid=AA", &salt, &hash),
            PhcError::Params,
        ),
        (phc("m=065536,t=3,p=4", &salt, &hash), PhcError::Params),
        (phc("m=+65536,t=3,p=4", &salt, &hash), PhcError::Params),
        (phc("m=,t=3,p=4", &salt, &hash), PhcError::Params),
        (phc("m=99999999999,t=3,p=4", &salt, &hash), PhcError::Params),
        (
            phc("m=65535,t=3,p=4", &salt, &hash),
            PhcError::MemoryTooLow(65535),
        ),
        (
            phc("m=4194305,t=3,p=4", &salt, &hash),
            PhcError::MemoryTooHigh(4_194_305),
        ),
        (
            phc("m=65536,t=2,p=4", &salt, &hash),
            PhcError::IterationsTooLow(2),
        ),
        (
            phc("m=65536,t=65,p=4", &salt, &hash),
            PhcError::IterationsTooHigh(65),
        ),
        (
            phc("m=65536,t=3,p=0", &salt, &hash),
            PhcError::ParallelismTooLow(0),
        ),
        (
            phc("m=65536,t=3,p=65", &salt, &hash),
            PhcError::ParallelismTooHigh(65),
        ),
        (
            phc(GOOD_PARAMS, &[1; 15], &hash),
            PhcError::SaltTooShort(15),
        ),
        (phc(GOOD_PARAMS, &[1; 65], &hash), PhcError::SaltTooLong(65)),
        (phc(GOOD_PARAMS, &salt, &[2; 31]), PhcError::HashLength(31)),
        (phc(GOOD_PARAMS, &salt, &[2; 33]), PhcError::HashLength(33)),
        (phc(GOOD_PARAMS, &salt, &[]), PhcError::HashLength(0)),
    ];
    for (input, want) in cases {
        assert_eq!(PhcHash::parse(&input).unwrap_err(), want, "{input}");
    }
}

#[test]
fn non_canonical_b64_is_rejected() {
    let good = phc(GOOD_PARAMS, &[1; 16], &[2; 32]);
    let salt_b64 = b64(&[1; 16]);
    let hash_b64 = b64(&[2; 32]);
    // Padding is not PHC B64.
    let padded_salt = good.replace(&salt_b64, &format!("{salt_b64}=="));
    assert_eq!(
        PhcHash::parse(&padded_salt).unwrap_err(),
        PhcError::SaltEncoding
    );
    // URL-safe alphabet is not PHC B64.
    let url_salt = good.replace(&salt_b64, &"_".repeat(salt_b64.len()));
    assert_eq!(
        PhcHash::parse(&url_salt).unwrap_err(),
        PhcError::SaltEncoding
    );
    // Non-zero unused trailing bits would give two strings for one hash.
    let mut bits = hash_b64.clone();
    bits.pop();
    bits.push('B');
    assert_ne!(bits, hash_b64);
    assert_eq!(
        PhcHash::parse(&good.replace(&hash_b64, &bits)).unwrap_err(),
        PhcError::HashEncoding
    );
    assert_eq!(
        PhcHash::parse(&good.replace(&hash_b64, "!!")).unwrap_err(),
        PhcError::HashEncoding
    );
}
