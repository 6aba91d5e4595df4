#[derive(herald_macros::OpenEnum)]
enum Level {
    #[herald(value = "high")]
    High,
    #[herald(unrecognized)]
    Unrecognized(u32),
}

fn main() {}
