from dsc.cli import main

raise SystemExit(main())
