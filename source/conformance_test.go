package source_test

import (
	"testing"

	"github.com/regmend/regmend/internal/imagetest"
	"github.com/regmend/regmend/source/sourcetest"
)

func TestMain(m *testing.M) { imagetest.Main(m) }

func TestLayoutConformance(t *testing.T)     { sourcetest.Run(t, sourcetest.OpenLayout) }
func TestRegistryConformance(t *testing.T)   { sourcetest.Run(t, sourcetest.OpenRegistry) }
func TestContainerdConformance(t *testing.T) { sourcetest.Run(t, sourcetest.OpenContainerd) }
func TestListConformance(t *testing.T)       { sourcetest.Run(t, sourcetest.OpenList) }
