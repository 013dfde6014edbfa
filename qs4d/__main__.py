from qs4d.cli import main

raise SystemExit(main())
