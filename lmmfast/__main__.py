from lmmfast.cli import main

raise SystemExit(main())
