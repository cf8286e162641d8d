//! InfluxDB `/query` answers as retrain reads its history (chunked JSON, one
//! document per line, read as the body arrives): the input is fed whole, and
//! again cut in three pieces at points its first two bytes choose, and byte
//! by byte when short.
//!
//! Beyond "no panic": where the network cuts the body must not matter, so
//! every way of feeding it gives the same rows, or an error every time.
#![no_main]

use gridcast_trainer::retrain::influx::fuzz_parse_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = fuzz_parse_response(&[data]);
    let (a, b) = match data {
        [a, b, ..] => (*a as usize % (data.len() + 1), *b as usize % (data.len() + 1)),
        _ => (0, 0),
    };
    let (a, b) = (a.min(b), a.max(b));
    let pieces = fuzz_parse_response(&[&data[..a], &data[a..b], &data[b..]]);
    same(&whole, &pieces, "three pieces");
    if data.len() <= 512 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        same(&whole, &fuzz_parse_response(&bytes), "byte by byte");
    }
});

fn same<T: PartialEq + std::fmt::Debug>(whole: &Result<T, String>, other: &Result<T, String>, how: &str) {
    match (whole, other) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "rows differ fed {how}"),
        (Err(_), Err(_)) => {}
        _ => panic!("fed whole: {whole:?}; fed {how}: {other:?}"),
    }
}
