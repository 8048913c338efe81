# bash completion for parallelcode-supervisor (installed as share/bash-completion/completions/parallelcode-supervisor).
_parallelcode_supervisor() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  case $prev in
    --socket | --pidfile | --config | --queue-password-file)
      COMPREPLY=($(compgen -f -- "$cur"))
      return ;;
    --plugin)
      COMPREPLY=($(compgen -f -X '!*.so' -- "$cur") $(compgen -d -- "$cur"))
      return ;;
    --socket-group)
      COMPREPLY=($(compgen -g -- "$cur"))
      return ;;
    --log-format)
      COMPREPLY=($(compgen -W "text json" -- "$cur"))
      return ;;
    --workers | --max-workers | --concurrency | --tick | --job-timeout | --max-jobs-per-worker | \
      --max-worker-rss | --kill-grace | --drain-timeout | --ring-bytes | --max-payload | --max-frame | \
      --max-clients | --max-jobs | --max-request-bytes | --idle-timeout | --batch-below | --queue | --queue-name | --lease | \
      --max-deliveries | --prefetch | --socket-mode | --log-level | --metrics)
      COMPREPLY=()
      return ;;
  esac
  COMPREPLY=($(compgen -W "-h --help --version --config --workers --max-workers --concurrency --tick --socket
    --socket-group --socket-mode --plugin --pidfile --job-timeout --max-jobs-per-worker --max-worker-rss
    --kill-grace --drain-timeout --ring-bytes --max-payload --max-frame --max-clients --max-jobs
    --max-request-bytes --idle-timeout --batch-below --queue --queue-name --queue-password-file --lease --max-deliveries
    --prefetch --log-level --log-format --metrics" -- "$cur"))
}
complete -F _parallelcode_supervisor parallelcode-supervisor
