#[derive(herald_macros::OpenEnum)]
enum Status {
    #[herald(value = "ready")]
    Ready,
    #[herald(unrecognized)]
    Unrecognized,
}

#[derive(herald_macros::OpenEnum)]
enum Size {
    #[herald(value = "small")]
    Small,
    #[herald(unrecognized)]
    Unrecognized { value: String },
}

fn main() {}
