package statedir

// SetBootID makes Open see id as the boot id until the test ends (a
// reboot, or a kernel without one: "").
func SetBootID(cleanup func(func()), id string) {
	old := bootID
	bootID = func() string { return id }
	cleanup(func() { bootID = old })
}
