//! De-identifies one DICOM file: `cargo run -p medledger-dicom --example deidentify IN OUT`
//! (a fixed demonstration key; real keys come from the caller, e.g. a research project).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = &args[..] else {
        eprintln!("usage: deidentify IN OUT");
        std::process::exit(2);
    };
    let bytes = std::fs::read(input).expect("reading the input");
    let key = medledger_dicom::DeidKey::new([0x5a; 32]);
    match medledger_dicom::deidentify(&bytes, &key) {
        Ok((out, report)) => {
            std::fs::write(output, out).expect("writing the output");
            println!("{report:?}");
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
