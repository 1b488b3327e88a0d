//! `causeway profile PATH [--concept-maps]`: check vendor profiles (a file or a folder), or export their
//! code maps as FHIR ConceptMaps (a `collection` Bundle, JSON).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A profile file (TOML) or a folder of them.
    path: String,
    /// Print every code map as a FHIR R4 ConceptMap, in one collection Bundle.
    #[arg(long)]
    concept_maps: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let profiles = crate::cmd::convert::load_profiles(&args.path)?;
    if args.concept_maps {
        let mut bundle = fhir::Bundle::collection();
        for p in &profiles {
            for map in &p.code_maps {
                let cm = v2fhir::codemap::to_concept_map(p, map);
                let full_url = cm.id.as_ref().map(|id| format!("urn:uuid:{id}"));
                bundle.push(cm, full_url);
            }
        }
        println!("{}", fhir::to_string_pretty(&bundle)?);
        return Ok(ExitCode::SUCCESS);
    }
    for p in &profiles {
        let sender = match (&p.sender_application, &p.sender_facility) {
            (None, None) => "any sender".to_owned(),
            (a, f) => format!(
                "MSH-3 {} / MSH-4 {}",
                a.as_deref().unwrap_or("*"),
                f.as_deref().unwrap_or("*")
            ),
        };
        let entries: usize = p.code_maps.iter().map(|m| m.entries.len()).sum();
        println!(
            "{}: {sender}; {} relocation(s), {} Z-segment mapping(s), {} code map(s) with {entries} entries",
            p.name,
            p.relocations.len(),
            p.z_segments.len(),
            p.code_maps.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
