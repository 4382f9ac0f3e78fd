//! Writes the seed corpora: `corpora/<target>/<name>` for every seed program, encoded with the
//! current byte format. Run it (`just seed`) after changing the format or the seeds.
//! Usage: `seed [CORPORA_DIR]` (default: `corpora` at the workspace root)

use hakmem_fuzz::encode;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../corpora"));
    for (target, progs) in hakmem_fuzz::seed_sets() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        // The directory holds seeds only (fuzzing writes new entries elsewhere), so files that
        // no seed produces any more are stale and go.
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if !progs.iter().any(|(n, _)| *n == name) {
                std::fs::remove_file(&path)?;
            }
        }
        for (name, p) in &progs {
            let bytes = encode(p).unwrap_or_else(|r| panic!("seed {target}/{name} does not encode: {}", r.0));
            std::fs::write(dir.join(name), bytes)?;
        }
        println!("{}: {} seed(s)", dir.display(), progs.len());
    }
    std::fs::write(root.join("hakmem.dict"), hakmem_fuzz::dictionary())?;
    println!("{}: fuzzing dictionary", root.join("hakmem.dict").display());
    Ok(())
}
