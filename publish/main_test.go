package publish_test

import (
	"testing"

	"github.com/regmend/regmend/internal/imagetest"
)

func TestMain(m *testing.M) { imagetest.Main(m) }
