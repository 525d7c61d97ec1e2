package app_test

import (
	"context"
	"fmt"
	"os"

	"github.com/eventline/eventline/sample/app"
)

// Run returns a one-line *SettingError, naming the setting, when a role is
// missing its configuration.
func ExampleRun() {
	err := app.Run(context.Background(), app.RoleProjector, app.Config{StoreURL: "./data/events.db", Addr: ":8083", Stdout: os.Stdout})
	fmt.Println(err)
	// Output:
	// EVENTLINE_REDIS_URL (--redis): required (an embedded Redis is only for serve), e.g. redis://localhost:6379
}
