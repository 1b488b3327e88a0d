//! `accept` refusals (with their ERR-3 codes) and `[[channel.filter]]` routing, configured
//! from TOML and checked against real messages from the shared corpus.

use std::path::Path;

use causeway_engine::config::{ChannelConfig, Config};
use causeway_engine::filter::{
    ERR3_UNSUPPORTED_EVENT, ERR3_UNSUPPORTED_MESSAGE_TYPE, ERR3_UNSUPPORTED_PROCESSING_ID,
    ERR3_UNSUPPORTED_VERSION, Refusal,
};

fn corpus(path: &str) -> Vec<u8> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the shared corpus must lie beside the clone",
            file.display()
        )
    })
}

/// ADT^A01^ADT_A01, v2.5.1, P, from ADT_APP / HOSP_A; PID-8 F; PV1-2 I.
const ADT: &str = "rethinkhealth-hl7v2/qa/fixtures/adt-a01-full.hl7";
/// ORU^R01^ORU_R01, v2.5.1, P, from LAB_APP / FACILITY_B; PID-8 F; three OBX.
const ORU: &str = "rethinkhealth-hl7v2/examples/mllp-client/samples/oru-r01.hl7";
/// ADT^A01 (no structure), v1.0 (not a real version), P, from SENDER / FAC; PID-8 M.
const BAD_VERSION: &str = "rethinkhealth-hl7v2/qa/fixtures/invalid-wrong-version.hl7";
/// ADT^A01 (no structure), v2.5, with Z segments; PID-5 TEST^PATIENT, PID-8 M.
const ADT_Z: &str = "rethinkhealth-hl7v2/qa/fixtures/edge-z-segments.hl7";

fn channel(extra: &str) -> ChannelConfig {
    let text = format!(
        "[[channel]]\nname = \"c\"\nsource = {{ type = \"mllp\", listen = \"127.0.0.1:0\" }}\n{extra}"
    );
    match Config::from_str(&text, ".") {
        Ok(mut c) => c.channels.remove(0),
        Err(e) => panic!("{e:?}"),
    }
}

fn check(accept: &str, file: &str) -> Result<(), Refusal> {
    let ch = channel(&format!("accept = {accept}\n"));
    let raw = corpus(file);
    let msg = hl7v2::parse(&raw).unwrap();
    ch.accept.check(&msg)
}

#[test]
fn accept_refusals_carry_the_right_err3_code() {
    let refused = |accept: &str, file: &str| check(accept, file).unwrap_err();
    let r = refused("{ types = [\"ADT^*\"] }", ORU);
    assert_eq!(r.err3, ERR3_UNSUPPORTED_MESSAGE_TYPE);
    assert_eq!(
        r.text,
        "message code \"ORU\" is not accepted by this channel"
    );
    let r = refused("{ types = [\"ADT^A08\", \"ORU^R01\"] }", ADT);
    assert_eq!(r.err3, ERR3_UNSUPPORTED_EVENT);
    assert_eq!(
        r.text,
        "trigger event \"A01\" of ADT is not accepted by this channel"
    );
    let r = refused("{ processing_ids = [\"T\", \"D\"] }", ADT);
    assert_eq!(r.err3, ERR3_UNSUPPORTED_PROCESSING_ID);
    assert_eq!(
        r.text,
        "processing id \"P\" is not accepted by this channel"
    );
    let r = refused("{ versions = [\"2.3\", \"2.5*\"] }", BAD_VERSION);
    assert_eq!(r.err3, ERR3_UNSUPPORTED_VERSION);
    assert_eq!(r.text, "version \"1.0\" is not accepted by this channel");
    assert_eq!(
        r.to_string(),
        "version \"1.0\" is not accepted by this channel (err-3 203)"
    );
    // The type is checked before the version: the first broken rule decides.
    assert_eq!(
        refused("{ types = [\"ORU\"], versions = [\"2.3\"] }", BAD_VERSION).err3,
        ERR3_UNSUPPORTED_MESSAGE_TYPE
    );
}

#[test]
fn accept_takes_what_it_lists() {
    let full = "{ types = [\"ADT^*\", \"ORU^R01\"], versions = [\"2.3\", \"2.5.1\"], processing_ids = [\"P\", \"T\"] }";
    assert_eq!(check(full, ADT), Ok(()));
    assert_eq!(check(full, ORU), Ok(()));
    assert_eq!(check("{ types = [\"ADT\"] }", BAD_VERSION), Ok(()));
    assert_eq!(check("{ versions = [\"2.*\"] }", ORU), Ok(()));
    // No accept table at all takes anything that parses.
    let ch = channel("");
    for file in [ADT, ORU, BAD_VERSION, ADT_Z] {
        let raw = corpus(file);
        assert_eq!(
            ch.accept.check(&hl7v2::parse(&raw).unwrap()),
            Ok(()),
            "{file}"
        );
    }
}

/// Which of the four messages pass the channel's filters.
fn passing(filters: &str) -> Vec<&'static str> {
    let ch = channel(filters);
    [ADT, ORU, BAD_VERSION, ADT_Z]
        .into_iter()
        .filter(|file| {
            let raw = corpus(file);
            ch.passes_filters(&hl7v2::parse(&raw).unwrap())
        })
        .collect()
}

#[test]
fn filters_route_by_header_fields_and_conditions() {
    let all = vec![ADT, ORU, BAD_VERSION, ADT_Z];
    assert_eq!(passing(""), all);
    for (filters, want) in [
        (
            "[[channel.filter]]\ntypes = [\"ADT^A0*\"]\n",
            vec![ADT, BAD_VERSION, ADT_Z],
        ),
        ("[[channel.filter]]\ntypes = [\"ORU\"]\n", vec![ORU]),
        (
            "[[channel.filter]]\nstructures = [\"ADT_A01\"]\n",
            vec![ADT],
        ),
        (
            "[[channel.filter]]\nversions = [\"2.5*\"]\n",
            vec![ADT, ORU, ADT_Z],
        ),
        (
            "[[channel.filter]]\nsending_applications = [\"ADT_APP\", \"LAB_*\"]\n",
            vec![ADT, ORU],
        ),
        (
            "[[channel.filter]]\nsending_facilities = [\"FAC\"]\n",
            vec![BAD_VERSION, ADT_Z],
        ),
        (
            "[[channel.filter]]\nwhen = \"PID-8 == 'F'\"\n",
            vec![ADT, ORU],
        ),
        (
            "[[channel.filter]]\nwhen = \"PID-8 not in ['F']\"\n",
            vec![BAD_VERSION, ADT_Z],
        ),
        ("[[channel.filter]]\nwhen = \"PV1-2 == 'I'\"\n", vec![ADT]),
        (
            "[[channel.filter]]\nwhen = \"PV1-2 == ''\"\n",
            vec![ORU, BAD_VERSION, ADT_Z],
        ),
        (
            "[[channel.filter]]\nwhen = \"OBX(3)-3.1 == 'HGB'\"\n",
            vec![ORU],
        ),
        (
            "[[channel.filter]]\nwhen = 'PID-3(1).1 matches \"^\\d{5}$\"'\n",
            all.clone(),
        ),
        (
            "[[channel.filter]]\nwhen = 'PID-3(2).4 matches \"^SS\"'\n",
            vec![ADT],
        ),
        ("[[channel.filter]]\nwhen = \"ZVN-2 != ''\"\n", vec![ADT_Z]),
        // Every condition of a filter must hold ...
        (
            "[[channel.filter]]\ntypes = [\"ADT\"]\nwhen = [\"PID-8 == 'M'\", \"PID-5.1 != 'TEST'\"]\n",
            vec![BAD_VERSION],
        ),
        // ... and every filter of the channel must pass.
        (
            "[[channel.filter]]\nversions = [\"2.5*\"]\n[[channel.filter]]\nwhen = \"PID-8 == 'M'\"\n",
            vec![ADT_Z],
        ),
    ] {
        assert_eq!(passing(filters), want, "{filters}");
    }
}
