package postgres_test

const envChild = "EVENTLINE_PG_CHILD"

func runChild(role string) int { return 2 }
