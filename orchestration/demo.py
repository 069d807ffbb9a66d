"""The demo moved to `examples/` (the library does not hold demos): `python -m examples.demo` / `hallo-demo`."""
import sys

if __name__ == "__main__":
    print("error: `python -m orchestration.demo` moved: use `python -m examples.demo` or `hallo-demo` (docs/demo.md)",
          file=sys.stderr)
    sys.exit(2)
