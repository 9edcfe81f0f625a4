pub struct Point {
    pub x: i64,
    pub y: i64,
}

#[switchboard::service]
pub trait Geometry {
    async fn norm(&self, point: Point) -> i64;
}

fn main() {}
