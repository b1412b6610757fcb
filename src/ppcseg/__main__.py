from ppcseg.cli import main

raise SystemExit(main())
