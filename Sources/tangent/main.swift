import ArgumentParser
Tangent.main()
struct Tangent: ParsableCommand {}
